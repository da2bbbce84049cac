package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/internal/mail/mailtest"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/relay"
	"github.com/clinicrelay/clinicrelay/web"
)

// TestAbuse_EndToEnd runs the abuse defences on a real relay and agent:
// a filled honeypot looks accepted and reaches no clinic, the pending cap
// refuses a fourth open request from one address however it is written, and an IP past its rate
// gets 429 with Retry-After.
func TestAbuse_EndToEnd(t *testing.T) {
	env := newAbuseEnv(t, web.Limits{CreateIP: web.Rate{Every: time.Hour, Burst: 5}})
	ag := env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	base, hc := env.Relay.HTTPURL(), &http.Client{Timeout: 10 * time.Second}
	var slots []string
	poll.For(t, 10*time.Second, func() error {
		var got slotsResp
		from := time.Now().Format(time.DateOnly)
		if code := newClient(t, base).JSON("GET", "/api/v1/clinics/maple/slots?from="+from, nil, &got); code != 200 || len(got.Slots) < 6 {
			return fmt.Errorf("slots: %d, %d of them", code, len(got.Slots))
		}
		for _, s := range got.Slots[:6] {
			slots = append(slots, s.ID)
		}
		return nil
	})

	// The honeypot: 201 with a token, but nothing held, queued or stored.
	bot := patient(slots[0], 1)
	bot["website"] = "http://spam.example"
	if code, _, out := post(t, hc, base, "maple", "192.0.2.1", bot); code != 201 || out["token"] == nil {
		t.Fatalf("honeypot: %d %v, want a 201 that looks real", code, out)
	}

	// Three open requests from one patient (each from an IP of its own),
	// then the fourth is refused, naming the fields.
	for i := 1; i <= 3; i++ {
		if code, _, out := post(t, hc, base, "maple", fmt.Sprintf("192.0.2.%d", 10+i), patient(slots[i], 7)); code != 201 {
			t.Fatalf("request %d: %d %v", i, code, out)
		}
	}
	// The same patient written otherwise: a +tag, capitals, and the phone
	// without its country code (the clinic is in Canada).
	again := patient(slots[4], 7)
	again["email"], again["phone"] = "Patient7+again@Example.org", "(647) 555-0007"
	code, _, out := post(t, hc, base, "maple", "192.0.2.20", again)
	if fields, _ := out["fields"].(map[string]any); code != 409 || out["code"] != "pending_limit" || fields["email"] == nil || fields["phone"] == nil {
		t.Errorf("fourth open request: %d %v, want 409 pending_limit naming email and phone", code, out)
	}
	poll.For(t, 10*time.Second, func() error {
		es, err := ag.Console.Requests(context.Background(), console.StatusAll)
		if err == nil && len(es) != 3 {
			err = fmt.Errorf("the clinic has %d requests, want the 3 real ones", len(es))
		}
		return err
	})
	if hasSlot(t, newClient(t, base), "maple", slots[0]) == false {
		t.Error("the honeypot's slot is not offered: something held it")
	}

	// One IP: 5 creations at once, then 429 with Retry-After.
	var last int
	var hdr http.Header
	for i := range 6 {
		last, hdr, _ = post(t, hc, base, "maple", "198.51.100.9", patient("bad-slot", 100+i))
	}
	if retry, err := strconv.Atoi(hdr.Get("Retry-After")); last != 429 || err != nil || retry < 1 {
		t.Errorf("sixth creation from one IP: %d, Retry-After %q; want 429 with seconds", last, hdr.Get("Retry-After"))
	}
}

// TestAbuse_JunkSpendsNoClinicBudget: thirty refused requests (415, 400,
// 422) from three addresses leave the clinic's budget whole, so a patient
// from a new address still books; once real holds spend it, the 429 says
// the clinic is busy, not the patient's network.
func TestAbuse_JunkSpendsNoClinicBudget(t *testing.T) {
	env := newAbuseEnv(t, web.Limits{CreateClinic: web.Rate{Every: time.Hour, Burst: 3},
		CreateIP: web.Rate{Every: time.Hour, Burst: 10}})
	env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	base, hc := env.Relay.HTTPURL(), &http.Client{Timeout: 10 * time.Second}
	slots := freeSlots(t, base, "maple", 4)
	for i := range 30 {
		ip := fmt.Sprintf("203.0.113.%d", 1+i%3)
		var code int
		switch i % 3 {
		case 0: // 415
			req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/clinics/maple/requests", strings.NewReader("x"))
			req.Header.Set("Content-Type", "text/plain")
			req.Header.Set("X-Forwarded-For", ip)
			res, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			code = res.StatusCode
		case 1: // 400
			code, _, _ = post(t, hc, base, "maple", ip, "not an object")
		case 2: // 422
			code, _, _ = post(t, hc, base, "maple", ip, patient("bad-slot", i))
		}
		if code < 400 || code >= 500 || code == 429 {
			t.Fatalf("junk %d: %d, want a 4xx refusal", i, code)
		}
	}
	for i, slot := range slots[:3] {
		if code, _, out := post(t, hc, base, "maple", fmt.Sprintf("198.51.100.%d", i+1), patient(slot, i)); code != 201 {
			t.Fatalf("patient %d from a new address after the junk: %d %v", i, code, out)
		}
	}
	code, _, out := post(t, hc, base, "maple", "198.51.100.50", patient(slots[3], 50))
	if msg, _ := out["error"].(string); code != 429 || !strings.Contains(msg, "clinic is receiving many requests") {
		t.Errorf("past the clinic's budget of holds: %d %v, want 429 saying the clinic is busy", code, out)
	}
}

// freeSlots waits for clinic to offer n free slots and returns their IDs.
func freeSlots(t *testing.T, base, clinic string, n int) []string {
	t.Helper()
	var slots []string
	poll.For(t, 10*time.Second, func() error {
		var got slotsResp
		from := time.Now().Format(time.DateOnly)
		if code := newClient(t, base).JSON("GET", "/api/v1/clinics/"+clinic+"/slots?from="+from, nil, &got); code != 200 || len(got.Slots) < n {
			return fmt.Errorf("slots: %d, %d of them", code, len(got.Slots))
		}
		slots = nil
		for _, s := range got.Slots[:n] {
			slots = append(slots, s.ID)
		}
		return nil
	})
	return slots
}

// TestAbuse_EmailCodePastTheBudget: once holds have spent the clinic's
// budget, a patient from a new address is not turned away: the relay emails
// a code (only for a valid request), holds nothing meanwhile, refuses a
// wrong code naming the field, and takes the request with the right one.
func TestAbuse_EmailCodePastTheBudget(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	dir := t.TempDir()
	r := startRelay(t, relay.Config{DataDir: dir, NATSListen: "127.0.0.1:0", AckWait: time.Second,
		Notify: relay.NotifyConfig{SMTPURL: smtp.URL(), SMTPFrom: "relay@book.test"},
		Abuse: relay.Abuse{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			Limits: web.Limits{CreateClinic: web.Rate{Every: time.Hour, Burst: 2}, CreateIP: web.Rate{Every: time.Hour, Burst: 10}}}})
	a, err := r.Admin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{t: t, Relay: r, DataDir: dir, Admin: a, ctx: t.Context()}
	ag := env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	base, hc := env.Relay.HTTPURL(), &http.Client{Timeout: 10 * time.Second}
	slots := freeSlots(t, base, "maple", 3)
	for i, slot := range slots[:2] {
		if code, _, out := post(t, hc, base, "maple", fmt.Sprintf("198.51.100.%d", i+1), patient(slot, i)); code != 201 {
			t.Fatalf("patient %d within the budget: %d %v", i, code, out)
		}
	}
	codeMails := func() []email {
		var out []email
		for _, m := range smtp.Messages() {
			if e := readEmail(t, m); strings.Contains(e.subject, "is your code for") {
				out = append(out, e)
			}
		}
		return out
	}

	// Junk past the budget: a 422 as always, and no email.
	if code, _, _ := post(t, hc, base, "maple", "203.0.113.9", patient("bad-slot", 9)); code != 422 {
		t.Errorf("junk past the budget: %d, want 422", code)
	}
	ada := patient(slots[2], 7)
	ada["email"] = "Ada.Lovelace@Example.org"
	code, _, out := post(t, hc, base, "maple", "203.0.113.10", ada)
	if fields, _ := out["fields"].(map[string]any); code != 409 || out["code"] != "email_code_required" || fields["email_code"] == nil {
		t.Fatalf("past the budget: %d %v, want 409 email_code_required", code, out)
	}
	var sent []email
	poll.For(t, 5*time.Second, func() error {
		if sent = codeMails(); len(sent) != 1 {
			return fmt.Errorf("%d code emails, want 1 (the junk gets none)", len(sent))
		}
		return nil
	})
	if sent[0].to != "Ada.Lovelace@Example.org" {
		t.Errorf("code sent to %q", sent[0].to)
	}
	emailed := regexp.MustCompile(`Your code: (\d{6})`).FindStringSubmatch(sent[0].text)
	if emailed == nil {
		t.Fatalf("no code in the email:\n%s", sent[0].text)
	}
	if !hasSlot(t, newClient(t, base), "maple", slots[2]) {
		t.Error("the slot is held while the code is on its way")
	}

	wrong := fmt.Sprintf("%06d", (atoi(t, emailed[1])+1)%1_000_000)
	ada["email_code"] = wrong
	code, _, out = post(t, hc, base, "maple", "203.0.113.10", ada)
	if fields, _ := out["fields"].(map[string]any); code != 422 || fields["email_code"] == nil {
		t.Errorf("a wrong code: %d %v, want 422 naming email_code", code, out)
	}
	ada["email_code"] = emailed[1][:3] + " " + emailed[1][3:]
	if code, _, out = post(t, hc, base, "maple", "203.0.113.10", ada); code != 201 {
		t.Fatalf("the right code: %d %v, want 201", code, out)
	}
	poll.For(t, 10*time.Second, func() error {
		es, err := ag.Console.Requests(context.Background(), console.StatusAll)
		if err == nil && len(es) != 3 {
			err = fmt.Errorf("the clinic has %d requests, want 3", len(es))
		}
		return err
	})
	// The code was for this clinic and mailbox only.
	bo := patient(slots[2], 8)
	bo["email_code"] = emailed[1]
	if code, _, out = post(t, hc, base, "maple", "203.0.113.11", bo); code != 422 {
		t.Errorf("Ada's code for another address: %d %v, want 422", code, out)
	}
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
