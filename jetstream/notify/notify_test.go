package notify_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/mail"
	"github.com/clinicrelay/clinicrelay/internal/mail/mailtest"
	"github.com/clinicrelay/clinicrelay/internal/natstest"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/notify"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

type noticeDir struct{}

func (noticeDir) Clinic(id string) (services.Clinic, bool) {
	return services.Clinic{ID: id, Name: "Maple Clinic", TimeZone: "America/Toronto"}, id == "maple"
}
func (noticeDir) Slots(string, time.Time, time.Time) []services.Slot { return nil }

type notifyEnv struct {
	t        *testing.T
	js       jetstream.JetStream
	n        *notify.Notifier
	contacts *notify.Contacts
	status   *cjs.Bucket
	smtp     *mailtest.Server
	mu       sync.Mutex
	remindAt time.Time
}

func startNotifier(t *testing.T, opts ...func(*notify.Config)) *notifyEnv {
	t.Helper()
	js := natstest.RunJetStream(t)
	ctx := t.Context()
	if err := cjs.Provision(ctx, js, cjs.Options{}); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	contacts, err := notify.NewContacts(js, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &notifyEnv{t: t, js: js, contacts: contacts, status: cjs.NewBucket(js, subjects.BucketStatus),
		smtp: mailtest.Start(t, mailtest.Options{})}
	sender, err := mail.New(mail.Config{URL: e.smtp.URL()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := notify.Config{JS: js, Contacts: contacts, Directory: noticeDir{}, Mailer: sender,
		Permanent: mail.Permanent, Describe: mail.Describe, From: "relay@book.example", BaseURL: "https://book.example",
		Retries: []time.Duration{200 * time.Millisecond, 200 * time.Millisecond},
		ReminderAt: func(time.Time) time.Time {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.remindAt
		}}
	for _, o := range opts {
		o(&cfg)
	}
	e.n = notify.New(cfg)
	rctx, cancel := context.WithCancel(context.Background())
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() { e.n.Run(rctx, started); close(done) }()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-done })
	return e
}

func (e *notifyEnv) request(id string, slot time.Time) services.Status {
	e.t.Helper()
	st := services.Status{RequestID: id, ClinicID: "maple", SlotID: services.SlotID("dr-lee", slot),
		State: services.StateReceived, UpdatedAt: time.Now().UTC()}
	c := services.Contact{ClinicID: "maple", RequestID: id, Email: "ada@example.org", Token: "maple_tok" + id[:4],
		Lang: "en", CreatedAt: time.Now()}
	if err := e.contacts.KeepContact(context.Background(), c, services.ContactUntil(c.CreatedAt, slot)); err != nil {
		e.t.Fatal(err)
	}
	e.put(st)
	return st
}

func (e *notifyEnv) put(st services.Status) {
	e.t.Helper()
	st.UpdatedAt = time.Now().UTC()
	b, _ := json.Marshal(st)
	if _, err := e.status.Put(context.Background(), subjects.StatusKey(st.ClinicID, st.RequestID), b); err != nil {
		e.t.Fatal(err)
	}
}

// awaitSubjects waits until the server has exactly the messages with these
// subjects, in order.
func (e *notifyEnv) awaitSubjects(timeout time.Duration, want ...string) []mailtest.Message {
	e.t.Helper()
	var msgs []mailtest.Message
	poll.For(e.t, timeout, func() error {
		msgs = e.smtp.Messages()
		var got []string
		for _, m := range msgs {
			got = append(got, subjectOf(m))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("emails %q, want %q", got, want)
		}
		return nil
	})
	return msgs
}

// reminderTime is when the notifier schedules reminders now.
func (e *notifyEnv) reminderTime() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.remindAt
}

// awaitCount waits until the server has accepted n messages.
func (e *notifyEnv) awaitCount(timeout time.Duration, n int) {
	e.t.Helper()
	poll.For(e.t, timeout, func() error {
		if got := len(e.smtp.Messages()); got < n {
			return fmt.Errorf("%d emails, want %d", got, n)
		}
		return nil
	})
}

func subjectOf(m mailtest.Message) string {
	for _, l := range strings.Split(string(m.Data), "\r\n") {
		if s, ok := strings.CutPrefix(l, "Subject: "); ok {
			return s
		}
	}
	return ""
}

const (
	reqA = "0123456789abcdef0123456789abcdef"
	reqB = "fedcba9876543210fedcba9876543210"
	reqC = "00000000000000000000000000000001"
)

// TestNotifier_Flow: received, booked (then the reminder, which the server
// fires from its schedule), declined, and a cancelled booking's reminder is
// not sent.
func TestNotifier_Flow(t *testing.T) {
	e := startNotifier(t)
	slot := time.Now().Add(72 * time.Hour).Truncate(time.Hour).UTC()
	e.mu.Lock()
	e.remindAt = time.Now().Add(2 * time.Second)
	e.mu.Unlock()
	st := e.request(reqA, slot)
	e.awaitSubjects(5*time.Second, "Your request to Maple Clinic was received")
	st.State = services.StateDelivered
	e.put(st) // nothing
	st.State = services.StateBooked
	e.put(st)
	msgs := e.awaitSubjects(5*time.Second, "Your request to Maple Clinic was received",
		"Your appointment at Maple Clinic is confirmed", "Reminder: your appointment at Maple Clinic")
	if to := msgs[0].To; len(to) != 1 || to[0] != "ada@example.org" {
		t.Errorf("to %q", to)
	}
	if !strings.Contains(string(msgs[1].Data), "text/calendar") {
		t.Error("booked email has no calendar")
	}

	// Booked then cancelled before the reminder is due: no reminder.
	b := e.request(reqB, slot)
	e.awaitCount(5*time.Second, 4) // each notice is sent while still true
	e.mu.Lock()
	e.remindAt = time.Now().Add(1500 * time.Millisecond)
	e.mu.Unlock()
	b.State = services.StateBooked
	e.put(b)
	e.awaitCount(5*time.Second, 5)
	b.State = services.StateCancelled
	e.put(b)
	e.awaitCount(5*time.Second, 6)
	// Past the reminder's time: no reminder for a cancelled booking.
	poll.Still(t, time.Until(e.reminderTime())+time.Second, func() error {
		if n := len(e.smtp.Messages()); n != 6 {
			return fmt.Errorf("%d emails after the cancellation, want 6", n)
		}
		return nil
	})
	got := e.smtp.Messages()
	var subjects []string
	for _, m := range got[3:] {
		subjects = append(subjects, subjectOf(m))
	}
	if fmt.Sprint(subjects) != fmt.Sprint([]string{"Your request to Maple Clinic was received",
		"Your appointment at Maple Clinic is confirmed", "Your appointment at Maple Clinic is cancelled"}) {
		t.Errorf("cancelled booking's emails: %q", subjects)
	}
	if _, err := e.contacts.Contact(context.Background(), "maple", reqB); err == nil {
		t.Error("contact kept after the cancellation was sent")
	}
	if n := e.n.Metrics.Sent.Load(); n != 6 {
		t.Errorf("sent = %d, want 6", n)
	}
}

// TestNotifier_Retry: a refusing server (451) gets the notice again later;
// it is acked only once accepted. After the last attempt the notice is
// given up visibly: a failed record, the counter, never counted as sent.
func TestNotifier_Retry(t *testing.T) {
	e := startNotifier(t)
	slot := time.Now().Add(72 * time.Hour).Truncate(time.Hour).UTC()
	e.mu.Lock()
	e.remindAt = time.Now() // no reminders
	e.mu.Unlock()

	e.smtp.Refuse(451)
	e.request(reqA, slot)
	poll.For(t, 5*time.Second, func() error {
		if n := e.smtp.Attempts(); n < 2 {
			return fmt.Errorf("%d attempts, want 2", n)
		}
		return nil
	})
	e.smtp.Refuse(0)
	e.awaitSubjects(5*time.Second, "Your request to Maple Clinic was received")
	if e.n.Metrics.Retried.Load() < 1 || e.n.Metrics.Sent.Load() != 1 || e.n.Metrics.Failed.Load() != 0 {
		t.Errorf("metrics: retried %d sent %d failed %d", e.n.Metrics.Retried.Load(), e.n.Metrics.Sent.Load(),
			e.n.Metrics.Failed.Load())
	}

	e.smtp.Refuse(451) // every attempt: given up after the third
	e.request(reqC, slot)
	e.awaitMetric("failed", &e.n.Metrics.Failed, 1)
	if f := e.n.Metrics.Failed.Load(); f != 1 {
		t.Fatalf("failed = %d", f)
	}
	if e.n.Metrics.Sent.Load() != 1 || len(e.smtp.Messages()) != 1 {
		t.Errorf("a refused notice counted as sent: sent %d, server has %d", e.n.Metrics.Sent.Load(), len(e.smtp.Messages()))
	}
	failed, err := notify.FailedNotices(context.Background(), e.n.JS())
	if err != nil || len(failed) != 1 {
		t.Fatalf("failed notices %v %v", failed, err)
	}
	if f := failed[0]; f.Notice.RequestID != reqC || f.Attempts != 3 || f.Error != "smtp 451 4.0.0" {
		t.Errorf("failed notice = %+v", f)
	}
	var metrics strings.Builder
	e.n.WriteMetrics(&metrics)
	if !strings.Contains(metrics.String(), "clinicrelay_notify_failed_total 1\n") {
		t.Errorf("metrics:\n%s", metrics.String())
	}

	// A permanent refusal (550) is given up at once.
	e.smtp.Refuse(550)
	e.request(reqB, slot)
	e.awaitMetric("failed", &e.n.Metrics.Failed, 2)
	if failed, _ := notify.FailedNotices(context.Background(), e.n.JS()); len(failed) != 2 || failed[1].Attempts != 1 {
		t.Errorf("after a 550: %+v", failed)
	}
}

// TestNotifier_SlowServer: with a slow mail server, the notices waiting
// their turn are not offered again while this relay still holds them (the
// ack wait passing in its buffer): each is sent once, never retried.
func TestNotifier_SlowServer(t *testing.T) {
	e := startNotifier(t, func(c *notify.Config) { c.AckWait = time.Second })
	slot := time.Now().Add(72 * time.Hour).Truncate(time.Hour).UTC()
	e.smtp.Delay(300 * time.Millisecond)
	const n = 8
	for i := range n {
		e.request(fmt.Sprintf("%032x", i+1), slot)
	}
	poll.For(t, 15*time.Second, func() error {
		if got := e.n.Metrics.Sent.Load(); got < n {
			return fmt.Errorf("sent %d of %d", got, n)
		}
		return nil
	})
	// Past the ack wait: a copy offered again would be sent by now.
	poll.Still(t, time.Second, func() error {
		if a := e.smtp.Attempts(); a != n {
			return fmt.Errorf("%d attempts for %d notices", a, n)
		}
		return nil
	})
	seen := map[string]int{}
	for _, m := range e.smtp.Messages() {
		seen[m.To[0]+" "+messageID(m)]++
	}
	if len(seen) != n || e.smtp.Attempts() != n || e.n.Metrics.Sent.Load() != n || e.n.Metrics.Retried.Load() != 0 {
		t.Errorf("%d notices: %d distinct emails, %d attempts, sent %d, retried %d", n, len(seen),
			e.smtp.Attempts(), e.n.Metrics.Sent.Load(), e.n.Metrics.Retried.Load())
	}
}

func messageID(m mailtest.Message) string {
	for _, l := range strings.Split(string(m.Data), "\r\n") {
		if s, ok := strings.CutPrefix(l, "Message-ID: "); ok {
			return s
		}
	}
	return ""
}

// awaitMetric waits until c reaches n.
func (e *notifyEnv) awaitMetric(name string, c interface{ Load() int64 }, n int64) {
	e.t.Helper()
	poll.For(e.t, 5*time.Second, func() error {
		if got := c.Load(); got < n {
			return fmt.Errorf("%s = %d, want %d", name, got, n)
		}
		return nil
	})
}

// TestNotifier_NotDueAnyMore: a patient's cancellation is put back (its
// publish failed) while the cancelled notice waits for the mail server:
// the patient is not told "cancelled" and keeps the contact.
func TestNotifier_NotDueAnyMore(t *testing.T) {
	e := startNotifier(t)
	slot := time.Now().Add(72 * time.Hour).Truncate(time.Hour).UTC()
	st := e.booked(reqA, slot)

	e.smtp.Refuse(451)
	st.State = services.StateCancelled
	e.put(st)
	e.awaitMetric("retried", &e.n.Metrics.Retried, 1)
	st.State = services.StateBooked // services.Booker.change's rollback
	e.put(st)
	e.smtp.Refuse(0)
	e.awaitMetric("skipped", &e.n.Metrics.Skipped, 1)
	poll.Still(t, 300*time.Millisecond, func() error { // the skipped notice is not sent late
		if n := len(e.smtp.Messages()); n != 2 {
			return fmt.Errorf("%d emails, want the 2 before the cancellation", n)
		}
		return nil
	})
	e.awaitSubjects(time.Second, "Your request to Maple Clinic was received",
		"Your appointment at Maple Clinic is confirmed")
	if _, err := e.contacts.Contact(context.Background(), "maple", reqA); err != nil {
		t.Errorf("contact after the rollback: %v", err)
	}
}

// contactTTL is the per-key TTL the contact of request was last stored with.
func (e *notifyEnv) contactTTL(request string) time.Duration {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), subjects.KVStream(subjects.BucketContacts))
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(),
		subjects.KVSubject(subjects.BucketContacts, subjects.ContactKey("maple", request)))
	if err != nil {
		e.t.Fatal(err)
	}
	d, err := time.ParseDuration(m.Header.Get("Nats-TTL"))
	if err != nil {
		e.t.Fatalf("Nats-TTL %q: %v", m.Header.Get("Nats-TTL"), err)
	}
	return d
}

// TestNotifier_RescheduleKeepsContact: a patient who moves to a later slot
// keeps getting notices until a day past it, though the clinic decides
// only after the first slot's day has passed.
func TestNotifier_RescheduleKeepsContact(t *testing.T) {
	e := startNotifier(t)
	first := time.Now().Add(2 * time.Hour).Truncate(time.Minute).UTC()
	later := first.Add(72 * time.Hour)
	st := e.request(reqA, first)
	e.awaitCount(5*time.Second, 1)
	if ttl := e.contactTTL(reqA); ttl > 27*time.Hour {
		t.Fatalf("first TTL %v", ttl)
	}
	st.SlotID = services.SlotID("dr-lee", later) // services.Booker.Reschedule
	e.put(st)
	e.awaitSubjects(5*time.Second, "Your request to Maple Clinic was received",
		"Your request to Maple Clinic was received")
	want := time.Until(later.Add(24 * time.Hour))
	poll.For(t, 5*time.Second, func() error {
		if ttl := e.contactTTL(reqA); ttl < want-time.Minute {
			return fmt.Errorf("contact kept %v after the reschedule, want about %v", ttl, want)
		}
		return nil
	})
}

// TestNotifier_OutcomeRepublished: the clinic refuses the patient's new
// time and publishes its earlier outcome (booked, same slot) again, longer
// than NOTIFY's dedupe window after the first booking: one confirmation.
func TestNotifier_OutcomeRepublished(t *testing.T) {
	e := startNotifier(t)
	slot := time.Now().Add(72 * time.Hour).Truncate(time.Hour).UTC()
	st := e.booked(reqA, slot)

	// The dedupe window passes (shortened: it is 10 minutes).
	ctx := context.Background()
	s, err := e.js.Stream(ctx, subjects.StreamNotify)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Duplicates = 200 * time.Millisecond
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // not a wait for something: the time the window must pass

	moved := st
	moved.State, moved.SlotID = services.StateReceived, services.SlotID("dr-lee", slot.Add(time.Hour))
	e.put(moved)
	e.awaitCount(5*time.Second, 3)
	st.Reason = "that time is taken"
	e.put(st)                                 // refused: booked on the first slot again
	poll.Still(t, time.Second, func() error { // no second confirmation
		if n := len(e.smtp.Messages()); n != 3 {
			return fmt.Errorf("%d emails, want 3", n)
		}
		return nil
	})
	e.awaitSubjects(time.Second, "Your request to Maple Clinic was received",
		"Your appointment at Maple Clinic is confirmed", "Your request to Maple Clinic was received")

	// A real move back to a slot booked before is told again.
	moved.State = services.StateBooked
	e.put(moved)
	e.awaitCount(5*time.Second, 4)
	e.put(st)
	e.awaitSubjects(5*time.Second, "Your request to Maple Clinic was received",
		"Your appointment at Maple Clinic is confirmed", "Your request to Maple Clinic was received",
		"Your appointment at Maple Clinic is confirmed", "Your appointment at Maple Clinic is confirmed")
}

// TestNotifier_StatusDeleted: a request the Booker undid (its status
// deleted) leaves no contact, even one the follower stored again.
func TestNotifier_StatusDeleted(t *testing.T) {
	e := startNotifier(t)
	e.request(reqA, time.Now().Add(72*time.Hour).Truncate(time.Hour).UTC())
	e.awaitCount(5*time.Second, 1)
	if err := e.status.Delete(context.Background(), subjects.StatusKey("maple", reqA), 0); err != nil {
		t.Fatal(err)
	}
	poll.For(t, 5*time.Second, func() error {
		if _, err := e.contacts.Contact(context.Background(), "maple", reqA); !errors.Is(err, cjs.ErrNotFound) {
			return fmt.Errorf("contact after its status was deleted: %v", err)
		}
		return nil
	})
}

// booked makes request id on slot, books it, and waits for both notices.
func (e *notifyEnv) booked(id string, slot time.Time) services.Status {
	e.t.Helper()
	st := e.request(id, slot)
	e.awaitCount(5*time.Second, 1)
	st.State = services.StateBooked
	e.put(st)
	e.awaitCount(5*time.Second, 2)
	return st
}

// logChannel is a second channel that keeps what it sends, and can hold its
// sends until released.
type logChannel struct {
	mu   sync.Mutex
	sent []services.Notice
	hold chan struct{}
}

func (l *logChannel) Name() string                    { return "log" }
func (l *logChannel) Reaches(c services.Contact) bool { return c.Email != "" }
func (l *logChannel) Permanent(error) bool            { return false }
func (l *logChannel) Describe(error) string           { return "error" }
func (l *logChannel) Send(ctx context.Context, out notify.Outgoing) error {
	if l.hold != nil {
		select {
		case <-l.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent = append(l.sent, out.Notice)
	return nil
}

func (l *logChannel) kinds() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, n := range l.sent {
		out = append(out, n.Kind)
	}
	return out
}

// TestNotifier_Channels: a notice goes once by every channel, each on its
// own subject and sender; the contact is forgotten only once every channel
// has sent the last notice.
func TestNotifier_Channels(t *testing.T) {
	other := &logChannel{hold: make(chan struct{})}
	e := startNotifier(t, func(c *notify.Config) { c.Channels = []notify.Channel{other} })
	slot := time.Now().Add(72 * time.Hour).Truncate(time.Hour).UTC()
	st := e.request(reqA, slot)
	e.awaitSubjects(5*time.Second, "Your request to Maple Clinic was received")
	stream, err := e.js.Stream(t.Context(), subjects.StreamNotify)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context(), jetstream.WithSubjectFilter(subjects.Notify("log", "maple")))
	if err != nil || info.State.Subjects[subjects.Notify("log", "maple")] != 1 {
		t.Fatalf("the other channel's notice on its subject: %v %v", info.State.Subjects, err)
	}
	st.State = services.StateDeclined
	e.put(st)
	e.awaitSubjects(5*time.Second, "Your request to Maple Clinic was received", "Your request to Maple Clinic was not accepted")
	if _, err := e.contacts.Contact(t.Context(), "maple", reqA); err != nil {
		t.Fatalf("contact forgotten before the other channel sent the last notice: %v", err)
	}
	close(other.hold)
	poll.For(t, 5*time.Second, func() error {
		if got := other.kinds(); fmt.Sprint(got) != fmt.Sprint([]string{services.NoticeReceived, services.NoticeDeclined}) {
			return fmt.Errorf("the other channel sent %v", got)
		}
		if _, err := e.contacts.Contact(t.Context(), "maple", reqA); err == nil {
			return fmt.Errorf("contact kept after every channel sent the last notice")
		}
		return nil
	})
}
