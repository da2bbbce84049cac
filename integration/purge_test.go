package integration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/mail/mailtest"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/jetstream/auth"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// TestPurge: `relay clinic purge` on a running relay erases everything of the
// clinic (queued requests, statuses, holds, availability, profile), says
// what it removed, cuts its agent off, and the site drops the clinic; another
// clinic keeps everything.
func TestPurge(t *testing.T) {
	env := NewEnv(t)
	creds := env.MustAddClinic("fir")
	env.MustStartAgent(env.MustAddClinic("yew"), nil, nil)
	ag := env.MustStartAgent(creds, nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	slots := awaitSlots(t, web, "fir", 2)
	var first map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/fir/requests", validRequest(slots[0]), &first); code != 201 {
		t.Fatalf("create: %d", code)
	}
	awaitState(t, web, first["token"], "delivered")
	firstSlot(t, web, "yew")
	ag.Stop()
	if code := web.JSON("POST", "/api/v1/clinics/fir/requests", validRequest(slots[1]), nil); code != 201 {
		t.Fatalf("create while the agent is away: %d", code)
	}

	code, out, stderr := relayCmd(t, "clinic", "purge", "fir", "--data", env.DataDir)
	if code != 0 {
		t.Fatalf("purge: %d %s", code, stderr)
	}
	if !strings.Contains(out, "1 queued request(s) and") || !strings.Contains(out, "2 STATUS") {
		t.Errorf("purge said %q; want 1 queued request and 2 statuses", out)
	}
	ctx := context.Background()
	js := env.Admin.JS
	for _, b := range []string{subjects.BucketClinics, subjects.BucketAvailability, subjects.BucketHolds, subjects.BucketStatus} {
		kv, err := js.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if l, err := kv.ListKeysFiltered(ctx, "fir", "fir.*"); !errors.Is(err, jetstream.ErrNoKeysFound) {
			var left []string
			if err == nil {
				for k := range l.Keys() {
					left = append(left, k)
				}
			}
			if len(left) > 0 || err != nil {
				t.Errorf("%s still has %v (%v)", b, left, err)
			}
		}
	}
	s, _ := js.Stream(ctx, subjects.StreamRequests)
	if info, err := s.Info(ctx, jetstream.WithSubjectFilter(subjects.ClinicFilter("fir"))); err != nil || len(info.State.Subjects) != 0 {
		t.Errorf("REQUESTS still holds %v for fir (%v)", info.State.Subjects, err)
	}
	poll.For(t, 5*time.Second, func() error {
		if code, _, _ := web.Do("GET", "/c/fir", "", nil); code != 404 {
			return errors.New("the site still shows fir")
		}
		return nil
	})
	co, _ := auth.CredsOption(creds)
	if nc, err := nats.Connect(env.Relay.NATSURL(), co, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("fir's agent creds still connect")
	}
	if !hasSlot(t, web, "yew", firstSlot(t, web, "yew")) {
		t.Error("yew lost its slots")
	}
}

// TestPurge_Notices: a purge also erases the clinic's patients' contacts
// (their email addresses) and its notices, the reminders the server would
// fire later included; another clinic's stay.
func TestPurge_Notices(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	env := notifyEnv(t, t.TempDir(), smtp, func(start time.Time) time.Time { return start.Add(-time.Minute) })
	ctx := context.Background()
	book := func(clinic string) string {
		ag := env.MustStartAgent(env.MustAddClinic(clinic), nil, nil)
		web := newClient(t, env.Relay.HTTPURL())
		var created map[string]string
		if code := web.JSON("POST", "/api/v1/clinics/"+clinic+"/requests", validRequest(firstSlot(t, web, clinic)), &created); code != 201 {
			t.Fatalf("%s: create: %d", clinic, code)
		}
		awaitState(t, web, created["token"], "delivered")
		if _, err := ag.Console.Confirm(ctx, created["id"]); err != nil {
			t.Fatal(err)
		}
		awaitState(t, web, created["token"], "booked")
		return created["id"]
	}
	fir, yew := book("fir"), book("yew")
	notify, _ := env.Admin.JS.Stream(ctx, subjects.StreamNotify)
	contacts, _ := env.Admin.JS.Stream(ctx, subjects.KVStream(subjects.BucketContacts))
	has := func(s jetstream.Stream, subject string) bool { // a value, not a delete or purge marker
		m, err := s.GetLastMsgForSubject(ctx, subject)
		return err == nil && m.Header.Get("KV-Operation") == ""
	}
	poll.For(t, 5*time.Second, func() error {
		if !has(notify, subjects.NotifyReminder("fir", fir)) || !has(notify, subjects.NotifyReminder("yew", yew)) {
			return errors.New("no reminders scheduled yet")
		}
		return nil
	})
	if code, out, stderr := relayCmd(t, "clinic", "purge", "fir", "--data", env.DataDir); code != 0 ||
		!strings.Contains(out, "1 CONTACTS") || !strings.Contains(out, "notice(s) removed") {
		t.Fatalf("purge: %d %q %s", code, out, stderr)
	}
	if has(notify, subjects.NotifyReminder("fir", fir)) {
		t.Error("fir's reminder is still scheduled")
	}
	if has(contacts, subjects.KVSubject(subjects.BucketContacts, subjects.ContactKey("fir", fir))) {
		t.Error("fir's patient's contact is still kept")
	}
	if !has(notify, subjects.NotifyReminder("yew", yew)) ||
		!has(contacts, subjects.KVSubject(subjects.BucketContacts, subjects.ContactKey("yew", yew))) {
		t.Error("yew lost its reminder or its contact")
	}
}
