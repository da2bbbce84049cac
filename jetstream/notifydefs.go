package jetstream

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// Limits of the notifier's stream and bucket.
const (
	NotifyMaxAge   = services.StatusLifetime // a reminder's schedule waits at most this long
	NotifyDedupe   = 10 * time.Minute        // Nats-Msg-Id (Notice.ID) window
	ContactsMaxAge = services.StatusLifetime // per-key TTLs are shorter (services.ContactUntil)
)

// NotifyStream is NOTIFY, the work queue of notices: IDs only. It holds the
// notices to send (notify.email.<clinic>, removed on ack), the reminders'
// schedules (notify.remind.<clinic>.<request>, which the server turns into
// a notice when due, across restarts) and the notices given up on
// (notify.failed.<clinic>, for operators).
func NotifyStream(o Options) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              subjects.StreamNotify,
		Description:       "notices to send, reminders' schedules and failed notices: ids only, never PHI",
		Subjects:          []string{subjects.AllNotify},
		Retention:         jetstream.WorkQueuePolicy,
		Storage:           jetstream.FileStorage,
		MaxAge:            NotifyMaxAge,
		Duplicates:        NotifyDedupe,
		MaxMsgSize:        MaxSmallBytes,
		AllowMsgSchedules: true,
		AllowRollup:       true, // a schedule replaces the request's previous one (Nats-Rollup: sub)
		AllowMsgTTL:       true,
		Replicas:          o.replicas(),
	}
}

// ContactsBucket is CONTACTS: <clinic>.<request> → the patient's contact,
// AES-GCM encrypted by the relay, with a per-key TTL.
func ContactsBucket(o Options) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: subjects.BucketContacts,
		Description: "patients' contacts for notices, encrypted by the relay: <clinic>.<request>", History: 1,
		Storage: jetstream.FileStorage, Replicas: o.replicas(), TTL: ContactsMaxAge, LimitMarkerTTL: HoldMarkerTTL,
		MaxValueSize: MaxSmallBytes}
}

// FollowerConsumer follows STATUS from the moment it is made: each change
// once, across restarts.
func FollowerConsumer() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{Durable: subjects.NotifyFollower, Description: "status changes to notices",
		FilterSubject: subjects.KVSubject(subjects.BucketStatus, ">"), DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: -1, MaxAckPending: 1000}
}

// SenderConsumer sends the notices; the waits between attempts are the
// sender's (NakWithDelay), not the consumer's BackOff, which would also
// cut the ack wait of a send in progress to the first wait. MaxAckPending
// counts the notices waiting out a retry too, so it stays well above one:
// a notice a server keeps deferring must not hold up the others. The
// sender pulls one notice at a time (Notifier.start), so none waits in its
// buffer long enough for the server to offer it again.
func SenderConsumer(channel string, attempts int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{Durable: subjects.NotifySenderOn(channel), Description: channel + " notices",
		FilterSubject: subjects.AllNotifyOn(channel), AckPolicy: jetstream.AckExplicitPolicy, AckWait: NotifyAckWait,
		MaxDeliver: attempts, MaxAckPending: 100}
}

// NotifyAckWait is how long the server waits for news of a notice before it
// offers it again: the sender says "in progress" when it takes a notice up
// and every third of this while it sends, so only a relay that stopped
// lets it pass.
const NotifyAckWait = 2 * time.Minute
