package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/relay"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// TestFault_CutMidPublish: the web front's NATS connection is cut again and
// again while patients book. Every booking is answered by its deadline; every
// 201 is queued exactly once with its status; and every request queued for a
// booking that was not answered 201 has no status once the relay has undone
// it, so the clinic's agent drops it unstored (TestAgent_FailedBookingDropped):
// no clinic gets a request its patient was told failed.
func TestFault_CutMidPublish(t *testing.T) {
	addr := freeAddr(t)
	startNATS(t, addr, t.TempDir())
	proxy := startFreezer(t, addr)
	_, _, web, slots := seededExternalRelay(t, relay.Config{NATSURL: "nats://" + proxy.ln.Addr().String()}, "willow", 2)
	nc, err := nats.Connect("nats://" + addr) // the test's own view, never cut
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)

	const clients, storm = 8, 4 * time.Second
	type answer struct {
		code int
		id   string
		took time.Duration
	}
	var mu sync.Mutex
	answers := map[string]answer{} // by slot
	ctx, cancel := context.WithTimeout(context.Background(), storm)
	defer cancel()
	var wg sync.WaitGroup
	next := 0
	take := func() (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next >= len(slots) {
			return "", false
		}
		next++
		return slots[next-1], true
	}
	for range clients {
		wg.Go(func() {
			c := newClient(t, web.base)
			for ctx.Err() == nil {
				slot, ok := take()
				if !ok {
					return
				}
				var out map[string]string
				t0 := time.Now()
				code := c.JSON("POST", "/api/v1/clinics/willow/requests", validRequest(slot), &out)
				mu.Lock()
				answers[slot] = answer{code: code, id: out["id"], took: time.Since(t0)}
				mu.Unlock()
			}
		})
	}
	cuts := 0
	for ctx.Err() == nil {
		time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
		proxy.Cut()
		cuts++
	}
	wg.Wait()

	created, codes := 0, map[int]int{}
	for slot, a := range answers {
		codes[a.code]++
		if a.took > services.BookingDeadline+time.Second {
			t.Errorf("%s answered %d after %s, past the %s deadline", slot, a.code, a.took, services.BookingDeadline)
		}
		if a.code == 201 {
			created++
		}
	}
	t.Logf("%d cuts, %d bookings answered %v", cuts, len(answers), codes)
	if created == 0 || cuts < 10 {
		t.Fatalf("the storm did not run: %d cuts, %d created", cuts, created)
	}

	status, err := js.KeyValue(t.Context(), subjects.BucketStatus)
	if err != nil {
		t.Fatal(err)
	}
	hasStatus := func(id string) bool {
		_, err := status.Get(t.Context(), subjects.StatusKey("willow", id))
		return err == nil
	}
	// The undo of a booking cut mid-flight runs once the web is back.
	poll.For(t, 30*time.Second, func() error {
		queued := queuedBySlot(t, js)
		for slot, a := range answers {
			ids := queued[slot]
			switch {
			case a.code == 201 && (len(ids) != 1 || ids[0] != a.id || !hasStatus(a.id)):
				return fmt.Errorf("%s answered 201 as %s, queued as %v (status %v)", slot, a.id, ids, hasStatus(a.id))
			case a.code != 201:
				for _, id := range ids {
					if hasStatus(id) {
						return fmt.Errorf("%s answered %d, yet queued as %s with a status: the clinic would take it",
							slot, a.code, id)
					}
				}
			}
		}
		return nil
	})
}

// queuedBySlot is the request IDs in REQUESTS, by slot.
func queuedBySlot(t *testing.T, js jetstream.JetStream) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, m := range queuedMsgs(t, js) {
		if slot := m.Header.Get(subjects.HeaderSlotID); slot != "" {
			out[slot] = append(out[slot], m.Header.Get(subjects.HeaderRequestID))
		}
	}
	return out
}
