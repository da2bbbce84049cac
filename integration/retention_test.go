package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/mail/mailtest"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// TestRetention_FarEndOfHorizon: a booking for the last slot offered, made
// and confirmed today, keeps its status, its contact and its reminder until
// past the appointment (they lived 37 days while slots were offered 60 days
// out: the status page, the calendar file and the reminder of a booking 59
// days ahead went about three weeks early).
func TestRetention_FarEndOfHorizon(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	env := notifyEnv(t, t.TempDir(), smtp, nil)
	ag := env.MustStartAgent(env.MustAddClinic("pine"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	var last services.Slot
	poll.For(t, 10*time.Second, func() error {
		var got slotsResp
		from := time.Now().AddDate(0, 0, services.DaysAhead-7).Format(time.DateOnly)
		to := time.Now().AddDate(0, 0, services.DaysAhead).Format(time.DateOnly)
		if code := web.JSON("GET", "/api/v1/clinics/pine/slots?from="+from+"&to="+to, nil, &got); code != 200 || len(got.Slots) == 0 {
			return fmt.Errorf("slots at the far end: %d, %d", code, len(got.Slots))
		}
		_, start, _ := services.ParseSlotID(got.Slots[len(got.Slots)-1].ID)
		last = services.Slot{ID: got.Slots[len(got.Slots)-1].ID, Start: start}
		return nil
	})
	if days := time.Until(last.Start).Hours() / 24; days < services.DaysAhead-8 {
		t.Fatalf("the last slot is %.0f days ahead, not at the far end", days)
	}
	var created map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/pine/requests", validRequest(last.ID), &created); code != 201 {
		t.Fatalf("create: %d", code)
	}
	awaitState(t, web, created["token"], "delivered")
	if _, err := ag.Console.Confirm(t.Context(), created["id"]); err != nil {
		t.Fatal(err)
	}
	awaitState(t, web, created["token"], "booked")
	// Everything was last written now; each must outlive the appointment.
	needed := time.Until(last.Start.Add(24 * time.Hour))
	ctx := t.Context()
	maxAge := func(stream string) time.Duration {
		s, err := env.Admin.JS.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config.MaxAge
	}
	for _, stream := range []string{subjects.KVStream(subjects.BucketStatus), subjects.KVStream(subjects.BucketContacts),
		subjects.StreamNotify} {
		if age := maxAge(stream); age < needed {
			t.Errorf("%s keeps %s, the appointment is %s away", stream, age, needed.Round(time.Hour))
		}
	}
	contacts, _ := env.Admin.JS.Stream(ctx, subjects.KVStream(subjects.BucketContacts))
	var m *jetstream.RawStreamMsg
	poll.For(t, 5*time.Second, func() (err error) {
		m, err = contacts.GetLastMsgForSubject(ctx, subjects.KVSubject(subjects.BucketContacts, subjects.ContactKey("pine", created["id"])))
		return err
	})
	// The server counts the TTL from when it stored the contact.
	ttl, err := time.ParseDuration(m.Header.Get("Nats-TTL"))
	if expires := m.Time.Add(ttl); err != nil || expires.Before(last.Start.Add(24*time.Hour)) {
		t.Errorf("the contact's TTL is %q: it goes at %s, before a day past the appointment (%s)",
			m.Header.Get("Nats-TTL"), expires, last.Start)
	}
	notify, _ := env.Admin.JS.Stream(ctx, subjects.StreamNotify)
	poll.For(t, 5*time.Second, func() error {
		_, err := notify.GetLastMsgForSubject(ctx, subjects.NotifyReminder("pine", created["id"]))
		return err
	})
}
