package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/fhir"
	"github.com/clinicrelay/clinicrelay/agent/fhir/fhirtest"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// TestFHIR_Loop is the full loop with the FHIR connector against a real FHIR
// server (Medplum's router): the PMS's free slots appear on the site; a
// request becomes a proposed Appointment; booking it in the PMS shows booked
// to the patient; and a slot the PMS gives away meanwhile turns the request
// into a clear decline.
func TestFHIR_Loop(t *testing.T) {
	pms, start := pmsWithSlots(t, 4)
	conn, web, _ := fhirClinic(t, pms.URL, time.Hour)
	ctx := t.Context()

	// The PMS's slots on the site.
	slot := firstSlot(t, web, "cedar")
	var got slotsResp
	web.JSON("GET", "/api/v1/clinics/cedar/slots?from="+start.Format(time.DateOnly), nil, &got)
	if len(got.Slots) != 4 || !got.Slots[0].Start.Equal(start) || slot != got.Slots[0].ID {
		t.Fatalf("slots on the site: %+v, want the PMS's 4 from %s", got.Slots, start)
	}

	// A request becomes a proposed Appointment...
	id, token := request(t, web, "cedar", slot)
	a := pms.Appointment(id)
	if a["status"] != "proposed" {
		t.Fatalf("appointment status %v, want proposed", a["status"])
	}
	// ...and booking it in the PMS shows booked to the patient.
	a["status"] = "booked"
	if code := pms.Update(a); code != 200 {
		t.Fatalf("book in the PMS: %d", code)
	}
	if err := conn.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	awaitState(t, web, token, "booked")

	// The front desk books the next slot in the PMS; the site still offers
	// it (the agent has not polled yet), a patient asks for it, and is
	// declined, clearly.
	next := got.Slots[1]
	taken := pms.Search("Slot", url.Values{"start": {next.Start.Format(time.RFC3339)}})
	if len(taken) != 1 {
		t.Fatalf("%d PMS slots at %s", len(taken), next.Start)
	}
	taken[0]["status"] = "busy"
	if code := pms.Update(taken[0]); code != 200 {
		t.Fatalf("book at the front desk: %d", code)
	}
	var created map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/cedar/requests", validRequest(next.ID), &created); code != 201 {
		t.Fatalf("request the slot the PMS just gave away: %d", code)
	}
	awaitState(t, web, created["token"], "declined")
	var st struct{ Reason string }
	web.JSON("GET", "/api/v1/requests/"+created["token"], nil, &st)
	if st.Reason != fhir.ReasonSlotTaken {
		t.Errorf("decline reason %q, want %q", st.Reason, fhir.ReasonSlotTaken)
	}
	// The status page offers the clinic's other free times.
	if code, _, page := web.Do("GET", "/r/"+created["token"], "", nil); code != 200 ||
		!strings.Contains(page, "/c/cedar/request?slot="+got.Slots[2].ID) {
		t.Errorf("declined status page: %d, no link to the next free time %s", code, got.Slots[2].ID)
	}
	if n := len(pms.Search("Appointment", url.Values{"identifier": {fhir.SystemRequest + "|" + created["id"]}})); n != 0 {
		t.Errorf("%d Appointments for the declined request, want none", n)
	}
}

// TestFHIR_PMSDown: while the PMS does not answer, a request waits in the
// queue (never declined, never lost), the agent's heartbeat says so and the
// site shows the clinic as not syncing; when the PMS is back the request is
// stored.
func TestFHIR_PMSDown(t *testing.T) {
	pms, _ := pmsWithSlots(t, 2)
	target, _ := url.Parse(pms.URL)
	var down atomic.Bool
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host}).ServeHTTP(w, r)
	}))
	defer proxy.Close()

	_, web, _ := fhirClinic(t, proxy.URL+target.Path, 300*time.Millisecond)
	slot := firstSlot(t, web, "cedar")

	down.Store(true)
	poll.For(t, 10*time.Second, func() error {
		if _, _, page := web.Do("GET", "/c/cedar", "", nil); !strings.Contains(page, "not syncing") {
			return fmt.Errorf("the clinic page does not say the clinic is not syncing")
		}
		return nil
	})
	var created map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/cedar/requests", validRequest(slot), &created); code != 201 {
		t.Fatalf("request while the PMS is down: %d", code)
	}
	time.Sleep(3 * time.Second) // the agent tries and fails meanwhile
	var st statusResp
	if web.JSON("GET", "/api/v1/requests/"+created["token"], nil, &st); st.State != "received" {
		t.Fatalf("status while the PMS is down: %q, want received (waiting, not declined)", st.State)
	}

	down.Store(false)
	awaitState(t, web, created["token"], "delivered")
	if a := pms.Appointment(created["id"]); a["status"] != "proposed" {
		t.Errorf("appointment after the PMS came back: %v", a["status"])
	}
	poll.For(t, 10*time.Second, func() error {
		if _, _, page := web.Do("GET", "/c/cedar", "", nil); strings.Contains(page, "not syncing") {
			return fmt.Errorf("the clinic page still says not syncing")
		}
		return nil
	})
}

// pmsWithSlots starts a FHIR server with one provider and n free half-hour
// slots tomorrow from 09:00 Toronto time, which it returns.
func pmsWithSlots(t *testing.T, n int) (*fhirtest.Server, time.Time) {
	t.Helper()
	pms := fhirtest.Start(t)
	loc, _ := time.LoadLocation("America/Toronto")
	now := time.Now().In(loc)
	start := time.Date(now.Year(), now.Month(), now.Day()+1, 9, 0, 0, 0, loc)
	pms.Slots(pms.Schedule("Dr. Alex Lee"), start, n, 30*time.Minute)
	return pms, start
}

// fhirClinic starts a relay with clinic "cedar" (America/Toronto) whose agent
// runs the FHIR connector on the PMS at pmsURL, polling every poll; it
// returns the connector, the patient's client and the relay.
func fhirClinic(t *testing.T, pmsURL string, poll time.Duration) (*fhir.Connector, *Client, *Env) {
	t.Helper()
	env := NewEnv(t)
	creds := env.MustAddClinic("cedar")
	conn, err := fhir.New(fhir.Config{URL: pmsURL, PollEvery: poll, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go conn.Run(ctx)
	env.MustStartAgent(creds, conn, nil)
	return conn, newClient(t, env.Relay.HTTPURL()), env
}

// TestFHIR_BadSlotLosesOnlyItself: a PMS Slot that starts off the minute
// (17:00:30), which the relay refuses, is left out and counted; the day's
// other slots are still offered (the relay dropped the whole day, and the
// agent said it was healthy).
func TestFHIR_BadSlotLosesOnlyItself(t *testing.T) {
	pms, start := pmsWithSlots(t, 4)
	odd := start.Add(2*time.Hour + 30*time.Second)
	pms.Create(fhirtest.Resource{"resourceType": "Slot", "schedule": map[string]any{"reference": "Schedule/" +
		pms.Schedule("Dr. Odd")}, "status": "free", "start": odd.UTC().Format(time.RFC3339),
		"end": odd.Add(30 * time.Minute).UTC().Format(time.RFC3339)})
	_, web, env := fhirClinic(t, pms.URL, time.Hour)
	firstSlot(t, web, "cedar")
	var got slotsResp
	web.JSON("GET", "/api/v1/clinics/cedar/slots?from="+start.Format(time.DateOnly), nil, &got)
	if len(got.Slots) != 4 {
		t.Errorf("%d slots on the site, want the PMS's 4 good ones", len(got.Slots))
	}
	poll.For(t, 10*time.Second, func() error {
		var hb services.Heartbeat
		if _, err := cjs.GetJSON(t.Context(), cjs.NewBucket(env.Admin.JS, subjects.BucketClinics),
			subjects.ClinicSubKey("cedar", subjects.KeySeen), &hb); err != nil {
			return err
		}
		if hb.Rejected != "PMS data rejected: 1 slot on 1 day" || !hb.Healthy {
			return fmt.Errorf("heartbeat %+v", hb)
		}
		return nil
	})
	if !strings.Contains(logged(t), "a slot starts on a whole minute") {
		t.Error("the agent's log does not say why the slot was left out")
	}
}
