package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/mail"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// Mailer hands one message to a mail server; nil means it accepted it.
type Mailer interface {
	Send(ctx context.Context, from, to string, msg []byte) error
}

// NoticeDirectory is what the sender reads from the catalog: the clinic's
// name and zone, and slots, whose length gives an appointment's end.
type NoticeDirectory interface {
	Clinic(id string) (services.Clinic, bool)
	Slots(clinic string, from, to time.Time) []services.Slot
}

// Config wires the notifier. JS must be allowed to make consumers
// on KV_STATUS and NOTIFY (the relay's admin user).
type Config struct {
	JS        jetstream.JetStream
	Contacts  *Contacts
	Directory NoticeDirectory
	// Mailer, when set, sends notices by email (the email channel).
	Mailer Mailer
	// Permanent reports a refusal that another attempt cannot change (an
	// SMTP 5xx); Describe says what went wrong without the server's text,
	// which may quote the address. Both may be nil.
	Permanent func(error) bool
	Describe  func(error) string
	From      string // the From address
	// Channels are more channels than email (Channel), each with its own
	// sender.
	Channels []Channel
	BaseURL  string // the web front's public URL, for status links
	// Retries are the waits before each new attempt at a notice; after the
	// last one it is given up (notify.failed.<clinic>, an ERROR log line and
	// the failed counter). Default DefaultRetries.
	Retries []time.Duration
	// ReminderAt is when to remind of an appointment starting at start
	// (default 24 hours before); tests bring it near.
	ReminderAt func(start time.Time) time.Time
	// AckWait is the sender consumer's ack wait (default cjs.NotifyAckWait);
	// tests shorten it.
	AckWait time.Duration
	Logger  *slog.Logger
	Now     func() time.Time
}

// DefaultRetries: eight attempts over about three hours.
var DefaultRetries = []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute,
	30 * time.Minute, time.Hour, time.Hour}

// sendTimeout bounds one notice's turn: reading STATUS and CONTACTS and the
// SMTP exchange (itself 30s at most).
const sendTimeout = 90 * time.Second

// Metrics count what the notifier did since the relay started.
type Metrics struct {
	Queued, Sent, Skipped, Retried, Failed, ContactErrors atomic.Int64
}

// Notifier turns STATUS changes into notices and sends them, by channel.
type Notifier struct {
	cfg      Config
	log      *slog.Logger
	stream   jetstream.Stream
	status   *cjs.Bucket
	channels []Channel // email first, when configured
	Metrics  Metrics
}

// New checks cfg.
func New(cfg Config) *Notifier {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = cjs.NotifyAckWait
	}
	if len(cfg.Retries) == 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.ReminderAt == nil {
		cfg.ReminderAt = func(start time.Time) time.Time { return start.Add(-24 * time.Hour) }
	}
	if cfg.Permanent == nil {
		cfg.Permanent = func(error) bool { return false }
	}
	if cfg.Describe == nil {
		cfg.Describe = func(err error) string { return "error" }
	}
	n := &Notifier{cfg: cfg, log: cfg.Logger.With("component", "notify"), status: cjs.NewBucket(cfg.JS, subjects.BucketStatus)}
	if cfg.Mailer != nil {
		email := &emailChannel{mailer: cfg.Mailer, from: cfg.From, envelopeFrom: cfg.From, permanent: cfg.Permanent,
			describe: cfg.Describe}
		if a, err := mail.ParseAddress(cfg.From); err == nil {
			email.envelopeFrom = a.Address
		}
		n.channels = append(n.channels, email)
	}
	n.channels = append(n.channels, cfg.Channels...)
	return n
}

// Run makes the two consumers and serves them until ctx ends.
func (n *Notifier) Run(ctx context.Context, started chan<- error) {
	stop, err := n.start(ctx)
	started <- err
	if err != nil {
		return
	}
	<-ctx.Done()
	stop()
}

func (n *Notifier) start(ctx context.Context) (func(), error) {
	js := n.cfg.JS
	var err error
	if n.stream, err = js.Stream(ctx, subjects.StreamNotify); err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	follower, err := js.CreateOrUpdateConsumer(ctx, subjects.KVStream(subjects.BucketStatus), cjs.FollowerConsumer())
	if err != nil {
		return nil, fmt.Errorf("notify follower: %w", err)
	}
	fc, err := follower.Consume(n.follow)
	if err != nil {
		return nil, err
	}
	stops := []func(){func() { fc.Stop(); <-fc.Closed() }}
	stopAll := func() {
		for _, stop := range stops {
			stop()
		}
	}
	for _, ch := range n.channels {
		scc := cjs.SenderConsumer(ch.Name(), len(n.cfg.Retries)+1)
		scc.AckWait = n.cfg.AckWait
		sender, err := js.CreateOrUpdateConsumer(ctx, subjects.StreamNotify, scc)
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("notify sender %s: %w", ch.Name(), err)
		}
		// One at a time: a notice pulled waits for at most the one being sent.
		sc, err := sender.Consume(func(m jetstream.Msg) { n.send(ch, m) }, jetstream.PullMaxMessages(1))
		if err != nil {
			stopAll()
			return nil, err
		}
		stops = append(stops, func() { sc.Stop(); <-sc.Closed() })
	}
	return stopAll, nil
}

// follow turns one STATUS change into a notice (and a reminder's schedule),
// and forgets the contact of a request whose status was deleted.
func (n *Notifier) follow(m jetstream.Msg) {
	h := m.Headers()
	if h.Get(jetstream.MarkerReasonHeader) != "" {
		m.Ack() // the status expired; the contact expires on its own
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		n.forgetDeleted(ctx, m)
		return
	}
	// The clinic and request come from the key; a value naming others (a
	// clinic's forgery, to silence another clinic's patient) is ignored.
	clinic, request, ok := statusKeyOf(m.Subject())
	var st services.Status
	if err := json.Unmarshal(m.Data(), &st); err != nil || !ok || st.ClinicID != clinic || st.RequestID != request {
		m.Ack() // not a status the relay can read; the web ignores it too
		return
	}
	if services.NoticeFor(st.State) == "" && st.State != services.StateDelivered {
		m.Ack()
		return
	}
	if err := n.queue(ctx, st); err != nil {
		n.log.Warn("notice not queued yet; retrying", "clinic_id", st.ClinicID, "request_id", st.RequestID,
			"state", st.State, "err", err.Error())
		m.NakWithDelay(2 * time.Second)
		return
	}
	m.Ack()
}

// statusKeyOf is the clinic and request of a STATUS key's subject.
func statusKeyOf(subject string) (clinic, request string, ok bool) {
	key := strings.TrimPrefix(subject, subjects.KVSubject(subjects.BucketStatus, ""))
	clinic, request, ok = strings.Cut(key, ".")
	return clinic, request, ok && subjects.ValidClinicID(clinic) == nil && subjects.ValidRequestID(request) == nil
}

// forgetDeleted deletes the contact of a request whose status was deleted
// (the Booker undid it): the Booker forgets it too, but a status change
// this follower was handling meanwhile may have stored it again.
func (n *Notifier) forgetDeleted(ctx context.Context, m jetstream.Msg) {
	clinic, request, ok := statusKeyOf(m.Subject())
	if !ok {
		m.Ack()
		return
	}
	if err := n.cfg.Contacts.Forget(ctx, clinic, request); err != nil {
		n.log.Warn("contact of a deleted status not deleted yet; retrying", "clinic_id", clinic,
			"request_id", request, "err", err.Error())
		m.NakWithDelay(2 * time.Second)
		return
	}
	m.Ack()
}

// queue publishes the notice a status calls for, if the patient left a
// contact and was not told the same already, and keeps the reminder's
// schedule and the contact (its lifetime, what it was told) in step with
// the status.
func (n *Notifier) queue(ctx context.Context, st services.Status) error {
	c, err := n.cfg.Contacts.Contact(ctx, st.ClinicID, st.RequestID)
	if errors.Is(err, cjs.ErrNotFound) {
		return nil // no address, or no notices due any more
	}
	if err != nil {
		return err
	}
	no, ok := services.StatusNotice(st)
	switch {
	case !ok: // delivered: no notice, but it may name a later slot
	case c.Notified[no.Kind] == no.SlotID && no.SlotID != "":
		// The same news again: a clinic refusing the patient's new time
		// publishes its earlier outcome again. Told once is enough.
		n.log.Info("notice already queued for this slot; not again", "clinic_id", st.ClinicID,
			"request_id", st.RequestID, "kind", no.Kind)
	default:
		b, _ := json.Marshal(no)
		for _, ch := range n.channels {
			if !ch.Reaches(c) {
				continue
			}
			id := no.ID()
			if ch.Name() != subjects.ChannelEmail {
				id += "." + ch.Name() // email's keeps the ID it had before channels
			}
			if _, err := n.cfg.JS.PublishMsg(ctx, &nats.Msg{Subject: subjects.Notify(ch.Name(), st.ClinicID), Data: b},
				jetstream.WithMsgID(id)); err != nil {
				return fmt.Errorf("publish notice: %w", err)
			}
			n.Metrics.Queued.Add(1)
		}
		// Recorded only once published: a failure before retries both.
		c.Notified = maps.Clone(c.Notified)
		if c.Notified == nil {
			c.Notified = map[string]string{}
		}
		c.Notified[no.Kind] = no.SlotID
	}
	switch no.Kind {
	case services.NoticeBooked:
		if err := n.schedule(ctx, st); err != nil {
			return err
		}
	case services.NoticeDeclined, services.NoticeCancelled:
		// The contact is deleted once this notice is sent.
		return n.stream.Purge(ctx, jetstream.WithPurgeSubject(subjects.NotifyReminder(st.ClinicID, st.RequestID)))
	}
	return n.keep(ctx, c, st)
}

// schedule has the server publish a reminder before the booked slot; a new
// schedule for the request replaces the old one. The server keeps it
// across restarts and fires it if it came due while it was down.
func (n *Notifier) schedule(ctx context.Context, st services.Status) error {
	_, start, err := services.ParseSlotID(st.SlotID)
	if err != nil {
		return nil
	}
	at := n.cfg.ReminderAt(start)
	if !at.After(n.cfg.Now().Add(time.Second)) {
		return nil // booked too late for a reminder: the booked notice says when
	}
	no := services.Notice{Kind: services.NoticeReminder, ClinicID: st.ClinicID, RequestID: st.RequestID,
		SlotID: st.SlotID, At: st.UpdatedAt}
	b, _ := json.Marshal(no)
	_, err = n.cfg.JS.PublishMsg(ctx, &nats.Msg{Subject: subjects.NotifyReminder(st.ClinicID, st.RequestID), Data: b},
		jetstream.WithScheduleAt(at), jetstream.WithScheduleTarget(subjects.NotifyEmail(st.ClinicID)))
	if err != nil {
		return fmt.Errorf("schedule reminder: %w", err)
	}
	return nil
}

// keep stores the contact again until a day past the latest slot the
// status names (a reschedule, a booking or a proposal may be later than
// the slot first requested), never shorter than for that first slot.
func (n *Notifier) keep(ctx context.Context, c services.Contact, st services.Status) error {
	var start time.Time
	for _, slot := range []string{c.SlotID, st.SlotID, st.ProposedSlot} {
		if _, t, err := services.ParseSlotID(slot); err == nil && t.After(start) {
			start = t
		}
	}
	now := n.cfg.Now()
	if start.IsZero() {
		start = now.Add(services.StatusLifetime) // no slot to go by: as long as the status
	}
	return n.cfg.Contacts.KeepContact(ctx, c, services.ContactUntil(now, start))
}

// JS is the notifier's JetStream handle (for FailedNotices).
func (n *Notifier) JS() jetstream.JetStream { return n.cfg.JS }
