package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
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

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", env.Relay.HTTPURL()+"/c/maple/events?date="+
		services.Date(start, loc), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	blocks := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var ev struct{ HTML string }
				if json.Unmarshal([]byte(data), &ev) == nil {
					blocks <- ev.HTML
				}
			}
		}
		close(blocks)
	}()
	// await reads blocks until one says what want says of the slot's link.
	await := func(offered bool, within time.Duration) {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case html, ok := <-blocks:
				if !ok {
					t.Fatal("the stream ended")
				}
				if strings.Contains(html, strings.ReplaceAll(link, "&", "&amp;")) == offered {
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
