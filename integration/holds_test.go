package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/relay"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/web"
)

// newAbuseEnv is NewEnv with abuse limits on: the web front believes
// X-Forwarded-For from loopback (the tests' own proxy), so each test
// patient can come from an IP of their own.
func newAbuseEnv(t *testing.T, limits web.Limits) *Env {
	t.Helper()
	dir := t.TempDir()
	r := startRelay(t, relay.Config{DataDir: dir, NATSListen: "127.0.0.1:0", AckWait: time.Second,
		Abuse: relay.Abuse{Limits: limits, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			MaxPending: services.DefaultMaxPending}})
	a, err := r.Admin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return &Env{t: t, Relay: r, DataDir: dir, Admin: a, ctx: t.Context()}
}

// patient is the i-th distinct test patient's request for slot.
func patient(slot string, i int) map[string]any {
	return map[string]any{"slot_id": slot, "name": fmt.Sprintf("Patient %d", i), "birth_date": "1980-04-02",
		"phone": fmt.Sprintf("+1 647 555 %04d", i), "email": fmt.Sprintf("patient%d@example.org", i)}
}

// post sends an API request for clinic from the client at ip, through the
// test's "proxy", and returns the status, headers and decoded body.
func post(t *testing.T, hc *http.Client, base, clinic, ip string, body any) (int, http.Header, map[string]any) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/clinics/"+clinic+"/requests", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", ip)
	res, err := hc.Do(req)
	if err != nil {
		t.Error(err)
		return 0, nil, nil
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Errorf("status %d body %q: %v", res.StatusCode, raw, err)
	}
	return res.StatusCode, res.Header, out
}

// TestHolds_Race: 200 patients from 200 IPs ask for one slot at once.
// Exactly one gets it; every other gets 409 with next free slots that do
// not include it, and within a second the slot is gone from the API and
// the clinic's page.
func TestHolds_Race(t *testing.T) {
	const n = 200
	env := newAbuseEnv(t, web.Limits{CreateClinic: web.Rate{Every: time.Millisecond, Burst: 2 * n}})
	env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	wc := newClient(t, env.Relay.HTTPURL())
	slot := firstSlot(t, wc, "maple")

	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}}
	type answer struct {
		code int
		body map[string]any
		at   time.Time
	}
	answers := make([]answer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			code, _, body := post(t, hc, env.Relay.HTTPURL(), "maple", fmt.Sprintf("198.51.%d.%d", i/200, i%200+1), patient(slot, i))
			answers[i] = answer{code, body, time.Now()}
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d concurrent requests for one slot answered in %s", n, time.Since(t0).Round(time.Millisecond))

	var won *answer
	for i, a := range answers {
		switch a.code {
		case http.StatusCreated:
			if won != nil {
				t.Fatalf("two requests got slot %s", slot)
			}
			won = &answers[i]
		case http.StatusConflict:
			free, _ := a.body["next_free"].([]any)
			if len(free) == 0 {
				t.Errorf("409 #%d offers no next free slot: %v", i, a.body)
			}
			for _, f := range free {
				if f.(map[string]any)["id"] == slot {
					t.Errorf("409 #%d offers the taken slot %s", i, slot)
				}
			}
		default:
			t.Errorf("request #%d: status %d %v, want 201 or 409", i, a.code, a.body)
		}
	}
	if won == nil {
		t.Fatal("no request got the slot")
	}

	// Gone from the API and from the clinic's page (the slot's own day)
	// within a second of the 201.
	_, start0, _ := services.ParseSlotID(slot)
	loc, _ := time.LoadLocation("America/Toronto")
	page := "/c/maple?date=" + start0.In(loc).Format(time.DateOnly)
	poll.For(t, time.Until(won.at.Add(time.Second)), func() error {
		if hasSlot(t, wc, "maple", slot) {
			return fmt.Errorf("slot %s still in the API", slot)
		}
		if _, _, body := wc.Do("GET", page, "", nil); strings.Contains(body, slot) {
			return fmt.Errorf("slot %s still on %s", slot, page)
		}
		return nil
	})
	t.Logf("slot gone from the API and the page %s after the 201", time.Since(won.at).Round(time.Millisecond))
}

// TestHolds_Expire: a hold nobody finishes or releases (a relay that died
// between holding and queueing) expires on its own, and the slot is
// offered again.
func TestHolds_Expire(t *testing.T) {
	env := NewEnv(t)
	env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	wc := newClient(t, env.Relay.HTTPURL())
	slot := firstSlot(t, wc, "maple")
	holds := cjs.NewRequests(env.Admin.JS)
	const ttl = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id := services.RequestIDFor(services.NewToken())
	if _, err := holds.Hold(ctx, "maple", slot, id, ttl); err != nil {
		t.Fatal(err)
	}
	held := time.Now()
	poll.For(t, time.Second, func() error {
		if hasSlot(t, wc, "maple", slot) {
			return fmt.Errorf("held slot %s still offered", slot)
		}
		return nil
	})
	// Nobody else can take it meanwhile.
	var refused map[string]any
	if code := wc.JSON("POST", "/api/v1/clinics/maple/requests", validRequest(slot), &refused); code != http.StatusConflict {
		t.Fatalf("request for the held slot: %d %v, want 409", code, refused)
	}
	poll.For(t, ttl+3*time.Second, func() error {
		if !hasSlot(t, wc, "maple", slot) {
			return fmt.Errorf("slot %s not offered again", slot)
		}
		return nil
	})
	t.Logf("hold of %s expired; slot offered again %s after it was taken", ttl, time.Since(held).Round(time.Millisecond))
	var created map[string]string
	if code := wc.JSON("POST", "/api/v1/clinics/maple/requests", validRequest(slot), &created); code != http.StatusCreated {
		t.Fatalf("request after the hold expired: %d %v", code, created)
	}
}
