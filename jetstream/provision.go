// Package jetstream defines clinicrelay's streams, buckets and consumers,
// provisions them idempotently, and adapts them to the domain types.
package jetstream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// Limits that shape the streams. They are variables of the definitions, not
// flags: changing one is a reviewed change to what every deployment gets.
const (
	RequestMaxAge      = services.RequestLifetime // an undelivered request leaves after 30 days
	RequestDedupe      = 10 * time.Minute         // Nats-Msg-Id (the request id) window
	RequestsPerClinic  = 10_000                   // per clinic and kind; DiscardNewPerSubject refuses more
	MaxClinicConsumers = 50_000                   // nats-server 2.15 defaults MaxConsumers to 1000 a stream
	StatusTTL          = services.StatusLifetime  // 68 days: a week past the booking horizon
	HoldMarkerTTL      = time.Minute              // how long a hold's expiry marker stays
	// Value caps: a day's slots, a status, a hold, a profile. An agent
	// cannot grow the web front's in-memory mirror past these.
	MaxDayBytes    = 256 << 10
	MaxSmallBytes  = 16 << 10
	RequestMaxSize = 64 << 10
	AgentAckWait   = 30 * time.Second
	AuditMaxAge    = 6 * 365 * 24 * time.Hour // HIPAA keeps records six years
	// AgentIdle is how long an agent's consumer outlives its last pull.
	// Its requests stay in REQUESTS meanwhile; the agent re-creates the
	// consumer when it comes back and gets them all.
	AgentIdle = time.Hour
)

// Options tune provisioning for the deployment.
type Options struct {
	Replicas int // 1 on one node, 3 on a cluster
}

func (o Options) replicas() int {
	if o.Replicas < 1 {
		return 1
	}
	return o.Replicas
}

// RequestsStream is the REQUESTS work queue.
func RequestsStream(o Options) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:                 subjects.StreamRequests,
		Description:          "patient requests, one subject per clinic; removed when the clinic's agent acks",
		Subjects:             []string{subjects.AllRequests},
		Retention:            jetstream.WorkQueuePolicy,
		Storage:              jetstream.FileStorage,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		MaxMsgsPerSubject:    RequestsPerClinic,
		MaxAge:               RequestMaxAge,
		Duplicates:           RequestDedupe,
		MaxMsgSize:           RequestMaxSize,
		MaxConsumers:         MaxClinicConsumers,
		Replicas:             o.replicas(),
	}
}

// AuditStream is AUDIT: one event per access to patient data, never
// deleted or purged before AuditMaxAge.
func AuditStream(o Options) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        subjects.StreamAudit,
		Description: "every access to patient data: ids and actors, never PHI",
		Subjects:    []string{subjects.AllAudit},
		Storage:     jetstream.FileStorage,
		MaxAge:      AuditMaxAge,
		DenyDelete:  true,
		DenyPurge:   true,
		Replicas:    o.replicas(),
	}
}

// HealthStream is RELAY_HEALTH: each relay's last write probe (ProbeWrite),
// an hour at most, so relays gone leave nothing behind.
func HealthStream(o Options) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              subjects.StreamHealth,
		Description:       "each relay's last write probe: it is ready while it can write",
		Subjects:          []string{subjects.AllHealth},
		Storage:           jetstream.FileStorage, // what fails when the disk or the file handles do
		MaxMsgsPerSubject: 1,
		MaxAge:            time.Hour,
		Discard:           jetstream.DiscardOld,
		Replicas:          o.replicas(),
	}
}

// ProbeWrite writes relay's probe to RELAY_HEALTH and waits for JetStream
// to store it: an error means JetStream cannot write now.
func ProbeWrite(ctx context.Context, js jetstream.JetStream, relay string) error {
	if _, err := js.Publish(ctx, "relay.health."+relay, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		return fmt.Errorf("write probe: %w", err)
	}
	return nil
}

// Buckets lists the KV buckets.
func Buckets(o Options) []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{Bucket: subjects.BucketAvailability, Description: "free slots: <clinic>.<date>", History: 1,
			Storage: jetstream.FileStorage, Replicas: o.replicas(), MaxValueSize: MaxDayBytes},
		{Bucket: subjects.BucketHolds, Description: "exclusive slot holds with per-key TTL: <clinic>.<slot>", History: 1,
			Storage: jetstream.FileStorage, Replicas: o.replicas(), LimitMarkerTTL: HoldMarkerTTL, MaxValueSize: MaxSmallBytes},
		{Bucket: subjects.BucketStatus, Description: "request outcomes, no PHI: <clinic>.<request>", History: 1,
			Storage: jetstream.FileStorage, Replicas: o.replicas(), TTL: StatusTTL, MaxValueSize: MaxSmallBytes},
		{Bucket: subjects.BucketClinics, Description: "clinic profiles and agent keys", History: 1,
			Storage: jetstream.FileStorage, Replicas: o.replicas(), MaxValueSize: MaxSmallBytes},
		{Bucket: subjects.BucketPending, Description: "requests not yet final per patient: <clinic>.<hmac of email or phone>",
			History: 1, Storage: jetstream.FileStorage, Replicas: o.replicas(), TTL: StatusTTL, MaxValueSize: MaxSmallBytes},
		ContactsBucket(o),
		// Accounts live until closed (one on an unused temporary password,
		// PortalTempLife); a session at most PortalSessionMax, a check or
		// link PortalLinkLife (their per-key TTLs).
		{Bucket: subjects.BucketPortal, Description: "patient portal accounts, sealed: <clinic>.<hmac of email>", History: 1,
			Storage: jetstream.FileStorage, Replicas: o.replicas(), LimitMarkerTTL: HoldMarkerTTL, MaxValueSize: MaxSmallBytes},
		{Bucket: subjects.BucketPortalTokens, Description: "portal checks, links and sessions, sealed, per-key TTL: <clinic>.<hash>",
			History: 1, Storage: jetstream.FileStorage, Replicas: o.replicas(), TTL: services.PortalSessionMax,
			LimitMarkerTTL: HoldMarkerTTL, MaxValueSize: MaxSmallBytes},
	}
}

// Provision creates or updates every stream and bucket; running it twice changes nothing.
func Provision(ctx context.Context, js jetstream.JetStream, o Options) error {
	for _, s := range []jetstream.StreamConfig{RequestsStream(o), AuditStream(o), NotifyStream(o), HealthStream(o)} {
		if _, err := js.CreateOrUpdateStream(ctx, s); err != nil {
			return fmt.Errorf("provision %s: %w", s.Name, err)
		}
	}
	for _, b := range Buckets(o) {
		if _, err := js.CreateOrUpdateKeyValue(ctx, b); err != nil {
			return fmt.Errorf("provision %s: %w", b.Bucket, err)
		}
	}
	return nil
}

// AgentConsumer is the durable pull consumer of one clinic's agent. The relay
// makes it when the agent asks (AgentConsumers), so only clinics with a live
// agent have one, and the agent has no say in its config.
//
// Its state is kept in memory: nats-server stops a file-backed consumer in
// about 10 ms (consumerFileStore.waitOnFlusher polls every 10 ms), one after
// another, so 2,000 of them took 21 s to shut down and 10,000 would take
// minutes. Losing the state in a crash costs nothing here: acked requests have
// left the work queue, and the unacked ones are delivered again to an agent
// whose store is idempotent. ackWait 0 means AgentAckWait.
func AgentConsumer(clinic string, ackWait time.Duration) jetstream.ConsumerConfig {
	if ackWait <= 0 {
		ackWait = AgentAckWait
	}
	return jetstream.ConsumerConfig{
		Durable:           subjects.AgentConsumer(clinic),
		Description:       "requests for the agent of clinic " + clinic,
		FilterSubject:     subjects.ClinicFilter(clinic),
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           ackWait,
		MaxDeliver:        -1, // a request is never dropped for being redelivered
		MaxAckPending:     1000,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: AgentIdle,
		MemoryStorage:     true,
	}
}
