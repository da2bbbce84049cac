package jetstream_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/internal/mail"
	"github.com/clinicrelay/clinicrelay/internal/mail/mailtest"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
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
	n        *cjs.Notifier
	contacts *cjs.Contacts
	status   *cjs.Bucket
	smtp     *mailtest.Server
	mu       sync.Mutex
	remindAt time.Time
}

func startNotifier(t *testing.T) *notifyEnv {
	t.Helper()
	js := runJetStream(t)
	ctx := t.Context()
	if err := cjs.Provision(ctx, js, cjs.Options{}); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	contacts, err := cjs.NewContacts(js, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &notifyEnv{t: t, contacts: contacts, status: cjs.NewBucket(js, subjects.BucketStatus),
		smtp: mailtest.Start(t, mailtest.Options{})}
	sender, err := mail.New(mail.Config{URL: e.smtp.URL()})
	if err != nil {
		t.Fatal(err)
	}
	e.n = cjs.NewNotifier(cjs.NotifierConfig{JS: js, Contacts: contacts, Directory: noticeDir{}, Mailer: sender,
		Permanent: mail.Permanent, Describe: mail.Describe, From: "relay@book.example", BaseURL: "https://book.example",
		Retries: []time.Duration{200 * time.Millisecond, 200 * time.Millisecond},
		ReminderAt: func(time.Time) time.Time {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.remindAt
		}})
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
	var got []string
	var msgs []mailtest.Message
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		msgs = e.smtp.Messages()
		got = got[:0]
		for _, m := range msgs {
			got = append(got, subjectOf(m))
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return msgs
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("emails %q, want %q", got, want)
	return nil
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
	e.mu.Lock()
	e.remindAt = time.Now().Add(1500 * time.Millisecond)
	e.mu.Unlock()
	b := e.request(reqB, slot)
	b.State = services.StateBooked
	e.put(b)
	b.State = services.StateCancelled
	e.put(b)
	time.Sleep(2500 * time.Millisecond)
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
	deadline := time.Now().Add(5 * time.Second)
	for e.smtp.Attempts() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	e.smtp.Refuse(0)
	e.awaitSubjects(5*time.Second, "Your request to Maple Clinic was received")
	if e.n.Metrics.Retried.Load() < 1 || e.n.Metrics.Sent.Load() != 1 || e.n.Metrics.Failed.Load() != 0 {
		t.Errorf("metrics: retried %d sent %d failed %d", e.n.Metrics.Retried.Load(), e.n.Metrics.Sent.Load(),
			e.n.Metrics.Failed.Load())
	}

	e.smtp.Refuse(451) // every attempt: given up after the third
	e.request(reqC, slot)
	deadline = time.Now().Add(5 * time.Second)
	for e.n.Metrics.Failed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if f := e.n.Metrics.Failed.Load(); f != 1 {
		t.Fatalf("failed = %d", f)
	}
	if e.n.Metrics.Sent.Load() != 1 || len(e.smtp.Messages()) != 1 {
		t.Errorf("a refused notice counted as sent: sent %d, server has %d", e.n.Metrics.Sent.Load(), len(e.smtp.Messages()))
	}
	failed, err := cjs.FailedNotices(context.Background(), e.n.JS())
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
	deadline = time.Now().Add(5 * time.Second)
	for e.n.Metrics.Failed.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if failed, _ := cjs.FailedNotices(context.Background(), e.n.JS()); len(failed) != 2 || failed[1].Attempts != 1 {
		t.Errorf("after a 550: %+v", failed)
	}
}
