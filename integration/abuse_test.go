package integration

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/web"
)

// TestAbuse_EndToEnd runs the abuse defences on a real relay and agent:
// a filled honeypot looks accepted and reaches no clinic, the pending cap
// refuses a fourth open request from one address, and an IP past its rate
// gets 429 with Retry-After.
func TestAbuse_EndToEnd(t *testing.T) {
	env := newAbuseEnv(t, web.Limits{CreateIP: web.Rate{Every: time.Hour, Burst: 5}})
	ag := env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	base, hc := env.Relay.HTTPURL(), &http.Client{Timeout: 10 * time.Second}
	var slots []string
	checkFor(t, 10*time.Second, func() error {
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
	code, _, out := post(t, hc, base, "maple", "192.0.2.20", patient(slots[4], 7))
	if fields, _ := out["fields"].(map[string]any); code != 409 || out["code"] != "pending_limit" || fields["email"] == nil {
		t.Errorf("fourth open request: %d %v, want 409 pending_limit naming email", code, out)
	}
	checkFor(t, 10*time.Second, func() error {
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
