package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ics "github.com/arran4/golang-ical"

	"github.com/clinicrelay/clinicrelay/internal/mail/mailtest"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/notify"
	"github.com/clinicrelay/clinicrelay/relay"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// notifyEnv is a relay that sends email through an in-process SMTP server
// (with STARTTLS and AUTH PLAIN), with retries shortened for tests; opts
// change its config further.
func notifyEnv(t *testing.T, dir string, smtp *mailtest.Server, reminderAt func(time.Time) time.Time, opts ...func(*relay.Config)) *Env {
	t.Helper()
	cfg := relay.Config{DataDir: dir, NATSListen: "127.0.0.1:0", AckWait: time.Second,
		Notify: relay.NotifyConfig{SMTPURL: smtp.URL(), SMTPTLS: smtp.ClientTLS, SMTPFrom: "Clinic Relay <relay@book.test>",
			Retries: []time.Duration{300 * time.Millisecond, 300 * time.Millisecond}, ReminderAt: reminderAt}}
	for _, o := range opts {
		o(&cfg)
	}
	r := startRelay(t, cfg)
	a, err := r.Admin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return &Env{t: t, Relay: r, DataDir: dir, Admin: a, ctx: t.Context()}
}

// email is an accepted message, read back.
type email struct {
	to, subject, text string
	hdr               mail.Header
	ics               []byte
	tls               bool
}

func readEmail(t *testing.T, m mailtest.Message) email {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	e := email{to: strings.Join(m.To, ","), subject: subj, hdr: msg.Header, tls: m.TLS}
	mt, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if mt != "multipart/mixed" {
		e.text = readPart(t, msg.Body, msg.Header.Get("Content-Transfer-Encoding"))
		return e
	}
	r := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			return e
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(p.Header.Get("Content-Type"), "text/calendar") {
			b, _ := io.ReadAll(p)
			e.ics, _ = base64.StdEncoding.DecodeString(strings.ReplaceAll(string(b), "\r\n", ""))
			continue
		}
		b, _ := io.ReadAll(p) // multipart decodes quoted-printable
		e.text = string(b)
	}
}

func readPart(t *testing.T, r io.Reader, enc string) string {
	t.Helper()
	if enc != "quoted-printable" {
		t.Fatalf("text encoding %q", enc)
	}
	b, err := io.ReadAll(quotedprintable.NewReader(r))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// awaitEmails waits for the server to hold n messages and returns them.
func awaitEmails(t *testing.T, s *mailtest.Server, n int, timeout time.Duration) []email {
	t.Helper()
	poll.For(t, timeout, func() error {
		if got := len(s.Messages()); got != n {
			return fmt.Errorf("%d emails, want %d", got, n)
		}
		return nil
	})
	var out []email
	for _, m := range s.Messages() {
		out = append(out, readEmail(t, m))
	}
	return out
}

func requestAs(slot, who, phone string) map[string]any {
	r := validRequest(slot)
	r["email"], r["phone"] = who, phone
	return r
}

// icsStart parses a calendar with golang-ical and returns its event's start.
func icsStart(t *testing.T, b []byte) time.Time {
	t.Helper()
	cal, err := ics.ParseCalendar(bytes.NewReader(b))
	if err != nil || len(cal.Events()) != 1 {
		t.Fatalf("calendar: %v\n%s", err, b)
	}
	start, err := cal.Events()[0].GetStartAt()
	if err != nil {
		t.Fatal(err)
	}
	if s := cal.Events()[0].GetProperty(ics.ComponentPropertySummary); s == nil || s.Value != "Appointment at Clinic maple" {
		t.Errorf("SUMMARY %v", s)
	}
	return start
}

// TestNotify_Email: received, booked (with its calendar file), declined in
// French without the reason; every message checked for headers and body.
func TestNotify_Email(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{User: "relay", Pass: "s3cret", STARTTLS: true})
	env := notifyEnv(t, t.TempDir(), smtp, nil)
	ag := env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	desk := ag.Desk(t)

	slot := firstSlot(t, web, "maple")
	var a map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/maple/requests", requestAs(slot, "ada@example.org", "416 555 0100"), &a); code != 201 {
		t.Fatalf("create: %d %v", code, a)
	}
	got := awaitEmails(t, smtp, 1, 10*time.Second)
	link := env.Relay.HTTPURL() + "/r/" + a["token"]
	if e := got[0]; e.to != "ada@example.org" || e.subject != "Your request to Clinic maple was received" ||
		!strings.Contains(e.text, link) || !e.tls || e.hdr.Get("From") != `"Clinic Relay" <relay@book.test>` {
		t.Errorf("received email: to %q subject %q tls %v from %q\n%s", e.to, e.subject, e.tls, e.hdr.Get("From"), e.text)
	}
	if code, _, _ := web.Do("GET", "/r/"+a["token"]+"/appointment.ics", "", nil); code != 404 {
		t.Errorf("calendar of a request not booked: %d, want 404", code)
	}

	awaitState(t, web, a["token"], "delivered")
	if code := desk.JSON("POST", "/api/requests/"+a["id"]+"/confirm", nil, nil); code != 200 {
		t.Fatalf("confirm: %d", code)
	}
	got = awaitEmails(t, smtp, 2, 10*time.Second)
	_, start, _ := services.ParseSlotID(slot)
	if e := got[1]; e.subject != "Your appointment at Clinic maple is confirmed" || !strings.Contains(e.text, link) || e.ics == nil {
		t.Errorf("booked email: subject %q, calendar %v\n%s", e.subject, e.ics != nil, e.text)
	} else if s := icsStart(t, e.ics); !s.Equal(start) {
		t.Errorf("booked email's calendar starts %v, want %v", s, start)
	}
	code, hdr, body := web.Do("GET", "/r/"+a["token"]+"/appointment.ics", "", nil)
	if code != 200 || hdr.Get("Content-Type") != "text/calendar; charset=utf-8" || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("calendar: %d %q %q", code, hdr.Get("Content-Type"), hdr.Get("Cache-Control"))
	}
	if s := icsStart(t, []byte(body)); !s.Equal(start) {
		t.Errorf("calendar file starts %v, want %v", s, start)
	}
	if code, _, body := web.Do("GET", "/api/v1/requests/"+a["token"]+"/appointment.ics", "", nil); code != 200 || !strings.Contains(body, "BEGIN:VEVENT") {
		t.Errorf("API calendar: %d", code)
	}

	// Declined, in French: the reason stays on the status page.
	slot2 := firstSlot(t, web, "maple")
	var b map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/maple/requests?lang=fr", requestAs(slot2, "bo@example.org", "416-555-0101"), &b); code != 201 {
		t.Fatalf("create: %d %v", code, b)
	}
	awaitEmails(t, smtp, 3, 10*time.Second)
	awaitState(t, web, b["token"], "delivered")
	if code := desk.JSON("POST", "/api/requests/"+b["id"]+"/decline", map[string]string{"reason": "Dr. Lee is away"}, nil); code != 200 {
		t.Fatalf("decline: %d", code)
	}
	got = awaitEmails(t, smtp, 4, 10*time.Second)
	if e := got[2]; e.to != "bo@example.org" || e.subject != "Votre demande à Clinic maple a été reçue" {
		t.Errorf("French received email: to %q subject %q", e.to, e.subject)
	}
	e := got[3]
	if e.subject != "Votre demande à Clinic maple n'a pas été acceptée" || !strings.Contains(e.text, "/r/"+b["token"]) {
		t.Errorf("declined email: subject %q\n%s", e.subject, e.text)
	}
	for _, m := range smtp.Messages() {
		// The phone in any form; not "555" alone, which a token, a boundary
		// or a Message-ID can hold by chance.
		for _, secret := range []string{"Dr. Lee is away", "sore knee", "Ada Patient", "1980-04-02", "555 0100", "5550100",
			"555-0100"} {
			if bytes.Contains(m.Data, []byte(secret)) {
				t.Errorf("an email carries %q", secret)
			}
		}
	}
	// The server holds a message before the notifier has its answer and counts it.
	poll.For(t, 5*time.Second, func() error {
		if n := env.Relay.Notifier.Metrics.Sent.Load(); n != 4 {
			return fmt.Errorf("sent = %d, want 4", n)
		}
		return nil
	})
}

// TestNotify_Failures: a server that answers 451 gets the notice again
// later, and it is sent once the server accepts; one that refuses every
// attempt leaves a failed notice, an ERROR line and the failed counter,
// and nothing counted as sent.
func TestNotify_Failures(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	env := notifyEnv(t, t.TempDir(), smtp, nil)
	env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	n := env.Relay.Notifier

	smtp.Refuse(451)
	var a map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/maple/requests", requestAs(firstSlot(t, web, "maple"), "ada@example.org", "416 555 0100"), &a); code != 201 {
		t.Fatalf("create: %d", code)
	}
	poll.For(t, 10*time.Second, func() error {
		if smtp.Attempts() < 2 {
			return fmt.Errorf("%d attempts", smtp.Attempts())
		}
		return nil
	})
	if n.Metrics.Sent.Load() != 0 {
		t.Fatal("a refused notice counted as sent")
	}
	smtp.Refuse(0)
	got := awaitEmails(t, smtp, 1, 10*time.Second)
	if got[0].subject != "Your request to Clinic maple was received" || n.Metrics.Sent.Load() != 1 {
		t.Errorf("after the retry: %q, sent %d", got[0].subject, n.Metrics.Sent.Load())
	}

	smtp.Refuse(451)
	var b map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/maple/requests", requestAs(firstSlot(t, web, "maple"), "bo@example.org", "416-555-0101"), &b); code != 201 {
		t.Fatalf("create: %d", code)
	}
	poll.For(t, 10*time.Second, func() error {
		if n.Metrics.Failed.Load() != 1 {
			return fmt.Errorf("failed = %d", n.Metrics.Failed.Load())
		}
		return nil
	})
	failed, err := notify.FailedNotices(context.Background(), n.JS())
	if err != nil || len(failed) != 1 || failed[0].Notice.RequestID != b["id"] || failed[0].Attempts != 3 {
		t.Fatalf("failed notices: %+v %v", failed, err)
	}
	// Operators list them (IDs and the server's code, never the address).
	if code, out, errOut := relayCmd(t, "notices", "--failed", "--data", env.DataDir); code != 0 ||
		!strings.Contains(out, b["id"]) || !strings.Contains(out, "after 3 attempts") || strings.Contains(out, "bo@example.org") {
		t.Errorf("relay notices --failed: %d %q %q", code, out, errOut)
	}
	if n.Metrics.Sent.Load() != 1 || len(smtp.Messages()) != 1 {
		t.Errorf("sent %d, server holds %d", n.Metrics.Sent.Load(), len(smtp.Messages()))
	}
	code, _, metrics := web.Do("GET", "/metrics", "", nil)
	if code != 200 || !strings.Contains(metrics, "clinicrelay_notify_failed_total 1\n") ||
		!strings.Contains(metrics, "clinicrelay_notify_sent_total 1\n") {
		t.Errorf("/metrics: %d\n%s", code, metrics)
	}
	if log := logged(t); !strings.Contains(log, `level=ERROR msg="notice NOT sent: given up"`) ||
		!strings.Contains(log, "request_id="+b["id"]) {
		t.Errorf("no ERROR line for the notice given up")
	}
}

// TestNotify_ReminderAcrossRestart: the reminder's schedule is the NATS
// server's; a relay stopped before it is due sends it after it restarts.
func TestNotify_ReminderAcrossRestart(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	dir := t.TempDir()
	var due atomic.Int64 // set once the booking is near
	due.Store(time.Now().Add(time.Hour).UnixNano())
	reminderAt := func(time.Time) time.Time { return time.Unix(0, due.Load()) }
	ctx, stop := context.WithCancel(context.Background())
	r1, err := relay.Start(ctx, relay.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0",
		AckWait: time.Second, Logger: testLogger(t),
		Notify: relay.NotifyConfig{SMTPURL: smtp.URL(), SMTPFrom: "relay@book.test", ReminderAt: reminderAt}})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { r1.Serve(ctx); close(served) }()
	a1, err := r1.Admin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{t: t, Relay: r1, DataDir: dir, Admin: a1, ctx: ctx}
	ag := env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	web := newClient(t, r1.HTTPURL())
	var a map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/maple/requests", validRequest(firstSlot(t, web, "maple")), &a); code != 201 {
		t.Fatalf("create: %d", code)
	}
	awaitState(t, web, a["token"], "delivered")
	due.Store(time.Now().Add(3 * time.Second).UnixNano())
	if code := ag.Desk(t).JSON("POST", "/api/requests/"+a["id"]+"/confirm", nil, nil); code != 200 {
		t.Fatalf("confirm: %d", code)
	}
	awaitEmails(t, smtp, 2, 10*time.Second) // received, booked
	ag.Stop()
	stop()
	<-served
	r1.Shutdown()
	if time.Now().After(reminderAt(time.Time{})) {
		t.Skip("the relay took too long to stop: the reminder may have gone before the restart")
	}
	if n := len(smtp.Messages()); n != 2 {
		t.Fatalf("%d emails before the restart", n)
	}
	time.Sleep(time.Until(reminderAt(time.Time{})) + 500*time.Millisecond) // due while no relay runs
	startRelay(t, relay.Config{DataDir: dir, NATSListen: "127.0.0.1:0", AckWait: time.Second,
		Notify: relay.NotifyConfig{SMTPURL: smtp.URL(), SMTPFrom: "relay@book.test", ReminderAt: reminderAt}})
	got := awaitEmails(t, smtp, 3, 10*time.Second)
	if got[2].subject != "Reminder: your appointment at Clinic maple" || !strings.Contains(got[2].text, "/r/"+a["token"]) {
		t.Errorf("reminder: %q\n%s", got[2].subject, got[2].text)
	}
}

// TestNotify_ForgedStatus: a status under one clinic's key that names
// another clinic's request neither tells that patient anything nor forgets
// their contact: the notifier takes the clinic and request from the key.
func TestNotify_ForgedStatus(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{User: "relay", Pass: "s3cret", STARTTLS: true})
	env := notifyEnv(t, t.TempDir(), smtp, nil)
	ag := env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	env.MustAddClinic("birch")
	web := newClient(t, env.Relay.HTTPURL())
	desk := ag.Desk(t)

	var a map[string]string
	slot := firstSlot(t, web, "maple")
	if code := web.JSON("POST", "/api/v1/clinics/maple/requests", requestAs(slot, "ada@example.org", "416 555 0100"), &a); code != 201 {
		t.Fatalf("create: %d %v", code, a)
	}
	awaitEmails(t, smtp, 1, 10*time.Second)
	awaitState(t, web, a["token"], "delivered")
	// Booked, on the patient's slot, before the clinic has booked it: had
	// the notifier believed it, the real confirmation would count as sent.
	forged, _ := json.Marshal(services.Status{RequestID: a["id"], ClinicID: "maple", SlotID: slot, State: services.StateBooked,
		UpdatedAt: time.Now().UTC()})
	if _, err := cjs.NewBucket(env.Admin.JS, subjects.BucketStatus).Put(t.Context(), subjects.StatusKey("birch", a["id"]), forged); err != nil {
		t.Fatal(err)
	}
	if code := desk.JSON("POST", "/api/requests/"+a["id"]+"/confirm", nil, nil); code != 200 {
		t.Fatalf("confirm: %d", code)
	}
	got := awaitEmails(t, smtp, 2, 10*time.Second)
	if got[1].subject != "Your appointment at Clinic maple is confirmed" {
		t.Errorf("second email %q, want the confirmation", got[1].subject)
	}
}
