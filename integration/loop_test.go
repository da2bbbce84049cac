package integration

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/services"
)

// firstSlot waits until the clinic's slots show in the API and returns the
// first that starts at least soon from now: a test changes its request
// within seconds, and an appointment that has started cannot be changed.
func firstSlot(t *testing.T, c *Client, clinic string) string {
	t.Helper()
	var slot string
	poll.For(t, 10*time.Second, func() error {
		var got slotsResp
		from := time.Now().Format(time.DateOnly)
		to := time.Now().AddDate(0, 0, 13).Format(time.DateOnly)
		if code := c.JSON("GET", "/api/v1/clinics/"+clinic+"/slots?from="+from+"&to="+to, nil, &got); code != 200 {
			return fmt.Errorf("slots: %d", code)
		}
		for _, s := range got.Slots {
			if s.Start.After(time.Now().Add(soon)) {
				slot = s.ID
				return nil
			}
		}
		return fmt.Errorf("no slots yet")
	})
	return slot
}

// soon is how far ahead firstSlot looks.
const soon = 15 * time.Minute

func hasSlot(t *testing.T, c *Client, clinic, slot string) bool {
	t.Helper()
	var got slotsResp
	from := time.Now().Format(time.DateOnly)
	if code := c.JSON("GET", "/api/v1/clinics/"+clinic+"/slots?from="+from+"&to="+time.Now().AddDate(0, 0, 13).Format(time.DateOnly), nil, &got); code != 200 {
		t.Fatalf("slots: %d", code)
	}
	for _, s := range got.Slots {
		if s.ID == slot {
			return true
		}
	}
	return false
}

func validRequest(slot string) map[string]any {
	return map[string]any{"slot_id": slot, "name": "Ada Patient", "birth_date": "1980-04-02",
		"phone": "+1 416 555 0100", "email": "ada@example.org", "reason": "sore knee"}
}

func awaitState(t *testing.T, c *Client, token string, want services.State) {
	t.Helper()
	poll.For(t, 10*time.Second, func() error {
		var st statusResp
		if code := c.JSON("GET", "/api/v1/requests/"+token, nil, &st); code != 200 {
			return fmt.Errorf("status: %d", code)
		}
		if services.State(st.State) != want {
			return fmt.Errorf("state %q, want %q", st.State, want)
		}
		return nil
	})
}

// TestLoop is the walking skeleton: onboard → agent connects → slots visible
// in the API and the page → request → agent has it → confirm in the console
// → the status says booked and the slot is gone.
func TestLoop(t *testing.T) {
	env := NewEnv(t)
	creds := env.MustAddClinic("maple")
	ag := env.MustStartAgent(creds, nil, nil)
	web := newClient(t, env.Relay.HTTPURL())

	slot := firstSlot(t, web, "maple")
	if code, _, page := web.Do("GET", "/c/maple", "", nil); code != 200 || !strings.Contains(page, "/c/maple/request?slot=") {
		t.Fatalf("clinic page: %d, no slot links in %.300q", code, page)
	}
	var created map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/maple/requests", validRequest(slot), &created); code != 201 {
		t.Fatalf("create: %d %v", code, created)
	}
	if !strings.HasPrefix(created["status_url"], "/r/maple_") || created["id"] == "" {
		t.Fatalf("create answer: %v", created)
	}
	token := created["token"]
	poll.For(t, time.Second, func() error {
		if hasSlot(t, web, "maple", slot) {
			return fmt.Errorf("held slot %s still offered", slot)
		}
		return nil
	})

	var entries []console.Entry
	poll.For(t, 10*time.Second, func() error {
		var err error
		entries, err = ag.Console.Requests(context.Background(), console.StatusPending)
		if err != nil || len(entries) != 1 {
			return fmt.Errorf("console has %d pending (%v)", len(entries), err)
		}
		return nil
	})
	if e := entries[0]; e.ID != created["id"] || e.Name != "Ada Patient" || e.SlotID != slot || e.Reason != "sore knee" {
		t.Fatalf("stored request = %+v", e)
	}
	awaitState(t, web, token, "delivered")

	desk := ag.Desk(t)
	start := time.Now()
	if code := desk.JSON("POST", "/api/requests/"+created["id"]+"/confirm", nil, nil); code != 200 {
		t.Fatalf("confirm: %d", code)
	}
	awaitState(t, web, token, "booked")
	t.Logf("confirm → patient status booked: %s", time.Since(start))
	if hasSlot(t, web, "maple", slot) {
		t.Error("booked slot still offered")
	}
	if code, _, page := web.Do("GET", created["status_url"], "", nil); code != 200 || !strings.Contains(page, "Booked") {
		t.Errorf("status page: %d %.200q", code, page)
	}
}

var csrfRE = regexp.MustCompile(`name="_csrf" value="([^"]+)"`)

// TestLoop_Form books through the HTML form with its CSRF token.
func TestLoop_Form(t *testing.T) {
	env := NewEnv(t)
	env.MustStartAgent(env.MustAddClinic("birch"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	slot := firstSlot(t, web, "birch")

	code, _, page := web.Do("GET", "/c/birch/request?slot="+slot, "", nil)
	m := csrfRE.FindStringSubmatch(page)
	if code != 200 || m == nil {
		t.Fatalf("form page: %d, csrf token found: %v", code, m != nil)
	}
	form := url.Values{"_csrf": {m[1]}, "slot_id": {slot}, "name": {"Bo Patient"}, "birth_date": {"1990-01-01"},
		"phone": {"416-555-0101"}, "email": {"bo@example.org"}, "consent": {"yes"}}
	code, hdr, _ := web.Do("POST", "/c/birch/request", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if code != 303 || !strings.HasPrefix(hdr.Get("Location"), "/r/birch_") {
		t.Fatalf("post form: %d location %q", code, hdr.Get("Location"))
	}
	code, _, page = web.Do("GET", hdr.Get("Location"), "", nil)
	if code != 200 || !strings.Contains(page, "Clinic birch") {
		t.Fatalf("status page: %d", code)
	}

	form.Set("_csrf", "forged")
	if code, _, _ := web.Do("POST", "/c/birch/request", "application/x-www-form-urlencoded", strings.NewReader(form.Encode())); code != 403 {
		t.Errorf("forged csrf: %d, want 403", code)
	}
}

// TestDecline: a declined request shows its reason to the patient and its
// slot is offered again (the agent released the web's hold once it had it).
func TestDecline(t *testing.T) {
	env := NewEnv(t)
	ag := env.MustStartAgent(env.MustAddClinic("fir"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	slot := firstSlot(t, web, "fir")
	var created map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/fir/requests", validRequest(slot), &created); code != 201 {
		t.Fatalf("create: %d", code)
	}
	awaitState(t, web, created["token"], "delivered")
	if hasSlot(t, web, "fir", slot) {
		t.Fatal("pending slot offered")
	}
	desk := ag.Desk(t)
	if code := desk.JSON("POST", "/api/requests/"+created["id"]+"/decline", map[string]string{"reason": "Dr. Lee is away"}, nil); code != 200 {
		t.Fatalf("decline: %d", code)
	}
	awaitState(t, web, created["token"], "declined")
	var st struct{ Reason string }
	web.JSON("GET", "/api/v1/requests/"+created["token"], nil, &st)
	if st.Reason != "Dr. Lee is away" {
		t.Errorf("reason = %q", st.Reason)
	}
	poll.For(t, 10*time.Second, func() error {
		if !hasSlot(t, web, "fir", slot) {
			return fmt.Errorf("declined slot %s not offered again", slot)
		}
		return nil
	})
}
