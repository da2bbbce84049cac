package jetstream_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/services"
)

func newPending(t *testing.T, now func() time.Time) (*cjs.Pending, *cjs.Requests) {
	t.Helper()
	js := runJetStream(t)
	if err := cjs.Provision(t.Context(), js, cjs.Options{}); err != nil {
		t.Fatal(err)
	}
	return cjs.NewPending(js, []byte("test secret"), 3, now), cjs.NewRequests(js)
}

// reqID is a fresh request ID; i only tells the calls apart when reading.
func reqID(int) string { return services.RequestIDFor(services.NewToken()) }

// TestPending_Cap: three requests count, the fourth is refused naming the
// field at the cap, and a final status or a past slot frees a place.
func TestPending_Cap(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	p, reqs := newPending(t, func() time.Time { return now })
	ctx := t.Context()
	ada := services.PendingKeys(services.Request{Email: " Ada@Example.org", Phone: "+1 (416) 555-0100"}, "CA")
	adaAgain := services.PendingKeys(services.Request{Email: "ada@example.org ", Phone: "14165550100"}, "CA")
	bo := services.PendingKeys(services.Request{Email: "bo@example.org", Phone: "+1 416 555 0100"}, "CA")
	var ids []string
	for i := range 3 {
		id := reqID(i)
		ids = append(ids, id)
		until := now.Add(24 * time.Hour)
		if i == 2 {
			until = now.Add(time.Hour)
		}
		if err := p.Reserve(ctx, "maple", id, ada, until); err != nil {
			t.Fatalf("reserve #%d: %v", i+1, err)
		}
		if _, err := reqs.PutStatus(ctx, services.Status{RequestID: id, ClinicID: "maple", State: services.StateReceived, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	err := p.Reserve(ctx, "maple", reqID(4), adaAgain, now.Add(time.Hour))
	var de *services.Error
	if !asError(err, &de) || de.Code != services.ELimit || de.Fields["email"] == "" || de.Fields["phone"] == "" {
		t.Fatalf("4th request, same patient written differently: %v, want ELimit naming email and phone", err)
	}
	// Same phone, other email: only the phone is at the cap.
	err = p.Reserve(ctx, "maple", reqID(5), bo, now.Add(time.Hour))
	if !asError(err, &de) || de.Fields["email"] != "" || de.Fields["phone"] == "" {
		t.Fatalf("other email, same phone: %v, want ELimit naming phone only", err)
	}
	// Refused requests were counted nowhere: bo's email is free.
	boEmail := bo[:1]
	if err := p.Reserve(ctx, "maple", reqID(5), boEmail, now.Add(time.Hour)); err != nil {
		t.Fatalf("bo's email after a refusal: %v", err)
	}
	// Another clinic has its own count.
	if err := p.Reserve(ctx, "oak", reqID(0), ada, now.Add(time.Hour)); err != nil {
		t.Fatalf("other clinic: %v", err)
	}
	// A final status frees a place.
	if _, err := reqs.PutStatus(ctx, services.Status{RequestID: ids[0], ClinicID: "maple", State: services.StateDeclined, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := p.Reserve(ctx, "maple", reqID(1), ada, now.Add(time.Hour)); err != nil {
		t.Fatalf("after a decline: %v", err)
	}
	if err := p.Reserve(ctx, "maple", reqID(2), ada, now.Add(time.Hour)); err == nil {
		t.Fatal("at the cap again: accepted")
	}
	// A slot that has started frees a place (ids[2] was an hour ahead).
	now = now.Add(time.Hour)
	if err := p.Reserve(ctx, "maple", reqID(2), ada, now.Add(time.Hour)); err != nil {
		t.Fatalf("after a slot started: %v", err)
	}
}

// TestPending_NoStatus: a request counted without a status (its hold
// failed, or its status was undone) counts only for PendingGrace; Release
// frees it at once.
func TestPending_NoStatus(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	p, _ := newPending(t, func() time.Time { return now })
	ctx := t.Context()
	ada := services.PendingKeys(services.Request{Email: "ada@example.org", Phone: "4165550100"}, "CA")
	for i := range 3 {
		if err := p.Reserve(ctx, "maple", reqID(i), ada, now.Add(24*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	last := reqID(9)
	if err := p.Reserve(ctx, "maple", last, ada, now.Add(24*time.Hour)); err == nil {
		t.Fatal("4th within the grace: accepted")
	}
	now = now.Add(cjs.PendingGrace + time.Second)
	if err := p.Reserve(ctx, "maple", last, ada, now.Add(24*time.Hour)); err != nil {
		t.Fatalf("after the grace: %v", err)
	}
	if err := p.Release(ctx, "maple", last, ada); err != nil {
		t.Fatal(err)
	}
	if err := p.Reserve(ctx, "maple", reqID(10), ada, now.Add(24*time.Hour)); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

// TestPending_Concurrent: 30 requests of one patient at once; the
// compare-and-set lets exactly the cap through.
func TestPending_Concurrent(t *testing.T) {
	p, _ := newPending(t, nil)
	ada := services.PendingKeys(services.Request{Email: "ada@example.org", Phone: "4165550100"}, "CA")
	var ok, limited atomic.Int32
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := p.Reserve(ctx, "maple", services.RequestIDFor(services.NewToken()), ada, time.Now().Add(time.Hour))
			switch services.ErrorCode(err) {
			case services.EInternal:
				if err == nil {
					ok.Add(1)
					return
				}
				t.Errorf("request %d: %v", i, err)
			case services.ELimit:
				limited.Add(1)
			default:
				t.Errorf("request %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 3 || limited.Load() != 27 {
		t.Errorf("accepted %d, limited %d; want 3 and 27", ok.Load(), limited.Load())
	}
}

func asError(err error, de **services.Error) bool {
	e, ok := err.(*services.Error)
	*de = e
	return ok
}
