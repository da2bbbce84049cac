package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/jetstream/readmodel"
	"github.com/clinicrelay/clinicrelay/services"
)

// TestClinicPage_Live: an open clinic page hears, within a second, that a
// free time was taken (a patient requested it) and that it is free again
// (the patient cancelled and the clinic's agent freed it).
func TestClinicPage_Live(t *testing.T) {
	env := NewEnv(t)
	env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	slot := firstSlot(t, web, "maple")
	_, start, _ := services.ParseSlotID(slot)
	loc, _ := time.LoadLocation("America/Toronto")
	link := "/c/maple/request?slot=" + slot

	events := sseEvents(t, env.Relay.HTTPURL()+"/c/maple/events?date="+services.Date(start, loc))
	// await reads blocks until one says what want says of the slot's link.
	await := func(offered bool, within time.Duration) {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatal("the stream ended")
				}
				if html, _ := ev["html"].(string); strings.Contains(html, strings.ReplaceAll(link, "&", "&amp;")) == offered {
					return
				}
			case <-deadline:
				t.Fatalf("within %s: the page never showed %s offered=%v", within, slot, offered)
			}
		}
	}
	await(true, 2*time.Second) // the block at once
	var created map[string]string
	t0 := time.Now()
	if code := web.JSON("POST", "/api/v1/clinics/maple/requests", validRequest(slot), &created); code != 201 {
		t.Fatalf("create: %d", code)
	}
	await(false, time.Second)
	t.Logf("taken: shown %s after the request", time.Since(t0).Round(time.Millisecond))
	awaitState(t, web, created["token"], services.StateDelivered)
	// The agent has released the hold; the web front still counts the slot
	// as held for ReleaseGrace after, lest it flash free before the day's
	// new value arrives. A patient who cancels later sees it free at once.
	time.Sleep(readmodel.ReleaseGrace)
	t0 = time.Now()
	if code := web.JSON("POST", "/api/v1/requests/"+created["token"]+"/cancel", nil, nil); code != 200 {
		t.Fatalf("cancel: %d", code)
	}
	await(true, time.Second) // the cancellation goes to the clinic, whose agent frees the slot
	t.Logf("freed: shown %s after the cancellation", time.Since(t0).Round(time.Millisecond))
}
