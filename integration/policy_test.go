package integration

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/services"
)

// setPolicy gives every provider of the agent's console policy p, and
// waits for the web front to have it.
func setPolicy(t *testing.T, desk, web *Client, p services.BookingPolicy) {
	t.Helper()
	var list []services.ProviderSchedule
	if code := desk.JSON("GET", "/api/providers", nil, &list); code != 200 {
		t.Fatalf("providers: %d", code)
	}
	for i := range list {
		list[i].Policy = p
	}
	if code := desk.JSON("PUT", "/api/providers", list, nil); code != 200 && code != 204 {
		t.Fatalf("set providers: %d", code)
	}
	poll.For(t, 10*time.Second, func() error {
		var clinics []struct {
			ID        string              `json:"id"`
			Providers []services.Provider `json:"providers"`
		}
		web.JSON("GET", "/api/v1/clinics", nil, &clinics)
		for _, c := range clinics {
			for _, pr := range c.Providers {
				if pr.Policy != p {
					return fmt.Errorf("provider %s's policy at the web front: %+v, want %+v", pr.ID, pr.Policy, p)
				}
			}
		}
		return nil
	})
}

// TestPolicy: a provider's booking rules hold at the web front, on its
// pages and against any slot ID sent: a time too soon or too far ahead is
// neither offered nor taken (422 with the reason), and a booked visit
// within the cancellation cutoff is not cancelled online unless just booked.
func TestPolicy(t *testing.T) {
	env := NewEnv(t)
	ag := env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	desk := ag.Desk(t)
	soonest := firstSlot(t, web, "maple")
	var all slotsResp
	from, to := time.Now().Format(time.DateOnly), time.Now().AddDate(0, 0, 20).Format(time.DateOnly)
	if code := web.JSON("GET", "/api/v1/clinics/maple/slots?from="+from+"&to="+to, nil, &all); code != 200 || len(all.Slots) < 3 {
		t.Fatalf("slots: %d, %d of them", code, len(all.Slots))
	}
	last := all.Slots[len(all.Slots)-1]
	_, start, _ := services.ParseSlotID(soonest)
	// The soonest time is now too soon, the last too far ahead.
	p := services.BookingPolicy{NoticeMinutes: int(time.Until(start).Minutes()) + 60,
		HorizonDays: int(time.Until(last.Start).Hours()/24) - 1, CutoffHours: services.MaxCutoffHours}
	if p.HorizonDays < 2 || p.NoticeMinutes > services.MaxNoticeMinutes {
		t.Fatalf("the demo's slots do not fit the test: %+v", p)
	}
	setPolicy(t, desk, web, p)

	for _, tt := range []struct{ slot, want string }{
		{soonest, "too soon"},
		{last.ID, "too far ahead"},
	} {
		if hasSlot(t, web, "maple", tt.slot) {
			t.Errorf("%s is still offered", tt.slot)
		}
		var e struct {
			Fields map[string]string `json:"fields"`
		}
		if code := web.JSON("POST", "/api/v1/clinics/maple/requests", validRequest(tt.slot), &e); code != 422 || !strings.Contains(e.Fields["slot_id"], tt.want) {
			t.Errorf("request for %s: %d %v, want 422 naming slot_id %q", tt.slot, code, e.Fields, tt.want)
		}
	}
	// The page says why, in French too: a link to the time at once, and
	// a form sent from a page left open.
	code, _, page := web.Do("GET", "/c/maple/request?lang=fr&slot="+soonest, "", nil)
	if code != 409 || !strings.Contains(page, "Cette heure est trop proche") || strings.Contains(page, `name="slot_id"`) {
		t.Fatalf("the form's page for a time too soon: %d, want 409 saying why, without the form", code)
	}
	code, _, page = web.Do("GET", "/c/maple/request?lang=fr&slot="+firstSlot(t, web, "maple"), "", nil)
	m := csrfRE.FindStringSubmatch(page)
	if code != 200 || m == nil {
		t.Fatalf("form page: %d, csrf token found: %v", code, m != nil)
	}
	form := url.Values{"_csrf": {m[1]}, "slot_id": {soonest}, "name": {"Ada Patient"}, "birth_date": {"1980-04-02"},
		"phone": {"416 555 0100"}, "email": {"ada@example.org"}, "consent": {"yes"}}
	code, _, page = web.Do("POST", "/c/maple/request", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if code != 422 || !strings.Contains(page, fmt.Sprintf("Cette heure est trop proche : la clinique prend les demandes en ligne au moins %d minutes", p.NoticeMinutes)) {
		t.Errorf("the form for a time too soon: %d, want 422 saying so in French", code)
	}

	// Booked within the cutoff: no cancelling online, and the page says whom to call.
	ok := firstSlot(t, web, "maple")
	var created map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/maple/requests", validRequest(ok), &created); code != 201 {
		t.Fatalf("a time the policy allows: %d %v", code, created)
	}
	awaitState(t, web, created["token"], "delivered")
	if code := desk.JSON("POST", "/api/requests/"+created["id"]+"/confirm", nil, nil); code != 200 {
		t.Fatalf("confirm: %d", code)
	}
	awaitState(t, web, created["token"], "booked")
	var e map[string]any
	if code := web.JSON("POST", "/api/v1/requests/"+created["token"]+"/cancel", nil, &e); code != 422 ||
		!strings.Contains(fmt.Sprint(e["error"]), "please call the clinic") {
		t.Fatalf("cancel within the cutoff: %d %v, want 422", code, e)
	}
	if code, _, page := web.Do("GET", "/r/"+created["token"], "", nil); code != 200 || !strings.Contains(page, `id="call-to-change"`) ||
		strings.Contains(page, `id="cancel"`) {
		t.Fatalf("the status page within the cutoff: %d, want no cancel link and whom to call", code)
	}
	awaitState(t, web, created["token"], "booked") // nothing changed

	// With a grace after booking, the patient who changes their mind at once still can.
	p.GraceMinutes = 30
	setPolicy(t, desk, web, p)
	if code := web.JSON("POST", "/api/v1/requests/"+created["token"]+"/cancel", nil, nil); code != 200 {
		t.Fatalf("cancel within the grace: %d, want 200", code)
	}
}

// TestNewPatient: the form and the API ask whether the patient has been to
// the clinic; the front desk sees the answer, and nothing when none was given.
func TestNewPatient(t *testing.T) {
	env := NewEnv(t)
	ag := env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	desk := ag.Desk(t)

	viaAPI := validRequest(firstSlot(t, web, "maple"))
	viaAPI["new_patient"] = true
	var a map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/maple/requests", viaAPI, &a); code != 201 {
		t.Fatalf("create: %d", code)
	}
	awaitState(t, web, a["token"], "delivered")

	slot := firstSlot(t, web, "maple")
	code, _, page := web.Do("GET", "/c/maple/request?slot="+slot, "", nil)
	m := csrfRE.FindStringSubmatch(page)
	if code != 200 || m == nil || !strings.Contains(page, `name="new_patient" value="existing"`) {
		t.Fatalf("form page: %d, csrf %v, the question asked: %v", code, m != nil, strings.Contains(page, "new_patient"))
	}
	form := url.Values{"_csrf": {m[1]}, "slot_id": {slot}, "name": {"Bo Patient"}, "birth_date": {"1990-01-01"},
		"phone": {"416-555-0101"}, "email": {"bo@example.org"}, "consent": {"yes"}, "new_patient": {"existing"}}
	code, hdr, _ := web.Do("POST", "/c/maple/request", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if code != 303 {
		t.Fatalf("post form: %d", code)
	}
	b := strings.TrimPrefix(hdr.Get("Location"), "/r/")
	awaitState(t, web, b, "delivered")

	var list []struct {
		Name       string `json:"name"`
		NewPatient *bool  `json:"new_patient"`
	}
	if code := desk.JSON("GET", "/api/requests", nil, &list); code != 200 || len(list) != 2 {
		t.Fatalf("list: %d %+v", code, list)
	}
	for _, e := range list {
		want := e.Name == "Ada Patient" // ada said new (API), bo said existing (form)
		if e.NewPatient == nil || *e.NewPatient != want {
			t.Errorf("%s: new_patient %v, want %v", e.Name, e.NewPatient, want)
		}
	}
	if code, _, page := desk.Do("GET", "/", "", nil); code != 200 || !strings.Contains(page, "new patient") || !strings.Contains(page, "existing patient") {
		t.Errorf("the front desk's list: %d, want both answers shown", code)
	}
}
