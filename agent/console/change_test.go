package console_test

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/connector/connectortest"
	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/services"
)

// free reports whether slot is among the console's free slots on its day.
func free(t *testing.T, c *console.Console, slot string) bool {
	t.Helper()
	_, start, _ := services.ParseSlotID(slot)
	day := time.Date(start.In(toronto).Year(), start.In(toronto).Month(), start.In(toronto).Day(), 0, 0, 0, 0, toronto)
	_, slots, err := c.FreeSlots(t.Context(), day, day.AddDate(0, 0, 1), toronto)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(slots, func(s services.Slot) bool { return s.ID == slot })
}

// changes counts the changes made, so each is later than the one before.
var changes atomic.Int64

func change(req services.Request, action, slot string) services.Change {
	n := changes.Add(1)
	return services.Change{ID: services.RequestIDFor(fmt.Sprint("change-", n)), RequestID: req.ID,
		ClinicID: req.ClinicID, Action: action, SlotID: slot, At: at(3, 8, 0).Add(time.Duration(n) * time.Millisecond)}
}

func entry(t *testing.T, c *console.Console, id string) console.Entry {
	t.Helper()
	es, err := c.Requests(t.Context(), console.StatusAll)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.ID == id {
			return e
		}
	}
	t.Fatalf("no request %s", id)
	return console.Entry{}
}

func TestConsole_Apply(t *testing.T) {
	nine, ten, eleven := services.SlotID("dr-lee", at(4, 9, 0)), services.SlotID("dr-lee", at(4, 10, 0)), services.SlotID("dr-lee", at(4, 11, 0))
	t.Run("Cancel", func(t *testing.T) {
		e := newEnv(t)
		req := request(1, "dr-lee", at(4, 9, 0))
		e.mustStore(t, req)
		if _, err := e.c.Confirm(t.Context(), req.ID); err != nil {
			t.Fatal(err)
		}
		if err := e.c.Apply(t.Context(), change(req, services.ActionCancel, "")); err != nil {
			t.Fatalf("Apply(cancel) = %v", err)
		}
		if got := entry(t, e.c, req.ID).Status; got != console.StatusCancelled {
			t.Errorf("status = %s, want cancelled", got)
		}
		if !free(t, e.c, nine) {
			t.Error("the cancelled slot is not free")
		}
		if st, ok := connectortest.Pending(t, e.c, req.ID); !ok || st.State != services.StateCancelled {
			t.Errorf("pending outcome = %+v, %v; want cancelled", st, ok)
		}
		// Nothing changes a cancelled request, and the front desk cannot decide it.
		if err := e.c.Apply(t.Context(), change(req, services.ActionReschedule, ten)); err != nil || entry(t, e.c, req.ID).SlotID != nine {
			t.Errorf("reschedule after cancel: %v, slot %s", err, entry(t, e.c, req.ID).SlotID)
		}
		_, err := e.c.Confirm(t.Context(), req.ID)
		wantCode(t, err, services.EConflict, "")
	})
	t.Run("Reschedule", func(t *testing.T) {
		e := newEnv(t)
		req := request(1, "dr-lee", at(4, 9, 0))
		e.mustStore(t, req)
		if _, err := e.c.Confirm(t.Context(), req.ID); err != nil {
			t.Fatal(err)
		}
		move := change(req, services.ActionReschedule, ten)
		if err := e.c.Apply(t.Context(), move); err != nil {
			t.Fatalf("Apply(reschedule) = %v", err)
		}
		got := entry(t, e.c, req.ID)
		if got.Status != console.StatusPending || got.SlotID != ten {
			t.Errorf("entry = %s on %s, want pending on %s", got.Status, got.SlotID, ten)
		}
		if !free(t, e.c, nine) || free(t, e.c, ten) {
			t.Errorf("free: old %v (want true), new %v (want false)", free(t, e.c, nine), free(t, e.c, ten))
		}
		if st, ok := connectortest.Pending(t, e.c, req.ID); !ok || st.State != services.StateDelivered || st.SlotID != ten {
			t.Errorf("pending outcome = %+v, %v; want delivered on the new slot", st, ok)
		}
		// Again (a redelivery): nothing more happens.
		if err := e.c.MarkPublished(t.Context(), pendingStatus(t, e.c, req.ID)); err != nil {
			t.Fatal(err)
		}
		if err := e.c.Apply(t.Context(), move); err != nil {
			t.Errorf("second Apply = %v", err)
		}
		if _, ok := connectortest.Pending(t, e.c, req.ID); ok {
			t.Error("a redelivered change queued its outcome again")
		}
	})
	t.Run("RescheduleTaken", func(t *testing.T) { // the request keeps its time and says why
		e := newEnv(t)
		req, other := request(1, "dr-lee", at(4, 9, 0)), request(2, "dr-lee", at(4, 10, 0))
		e.mustStore(t, req)
		e.mustStore(t, other)
		if err := e.c.Apply(t.Context(), change(req, services.ActionReschedule, ten)); err != nil {
			t.Fatalf("Apply = %v", err)
		}
		got := entry(t, e.c, req.ID)
		if got.SlotID != nine || got.Status != console.StatusPending {
			t.Errorf("entry = %s on %s, want pending on %s", got.Status, got.SlotID, nine)
		}
		if st, ok := connectortest.Pending(t, e.c, req.ID); !ok || st.Reason != console.ReasonMoveRefused || st.SlotID != nine {
			t.Errorf("pending outcome = %+v, %v; want the old slot with ReasonMoveRefused", st, ok)
		}
	})
	t.Run("AcceptProposal", func(t *testing.T) {
		e := newEnv(t)
		req := request(1, "dr-lee", at(4, 9, 0))
		e.mustStore(t, req)
		if _, err := e.c.Propose(t.Context(), req.ID, eleven); err != nil {
			t.Fatal(err)
		}
		if err := e.c.Apply(t.Context(), change(req, services.ActionReschedule, eleven)); err != nil {
			t.Fatalf("Apply = %v", err)
		}
		got := entry(t, e.c, req.ID)
		if got.Status != console.StatusBooked || got.SlotID != eleven || got.ProposedSlot != "" {
			t.Errorf("entry = %+v, want booked on %s", got, eleven)
		}
		if free(t, e.c, eleven) || !free(t, e.c, nine) {
			t.Errorf("free: proposed %v (want false), old %v (want true)", free(t, e.c, eleven), free(t, e.c, nine))
		}
	})
	t.Run("OutOfOrder", func(t *testing.T) { // moved to 10:00, then 11:00; the first move arrives last
		e := newEnv(t)
		req := request(1, "dr-lee", at(4, 9, 0))
		e.mustStore(t, req)
		first, second := change(req, services.ActionReschedule, ten), change(req, services.ActionReschedule, eleven)
		first.At, second.At = at(3, 8, 1), at(3, 8, 2)
		for _, ch := range []services.Change{second, first} {
			if err := e.c.Apply(t.Context(), ch); err != nil {
				t.Fatalf("Apply(%s) = %v", ch.SlotID, err)
			}
		}
		if got := entry(t, e.c, req.ID); got.SlotID != eleven {
			t.Errorf("request on %s, want the later move's %s", got.SlotID, eleven)
		}
		if !free(t, e.c, ten) || free(t, e.c, eleven) {
			t.Errorf("free: 10:00 %v (want true), 11:00 %v (want false)", free(t, e.c, ten), free(t, e.c, eleven))
		}
		if st, ok := connectortest.Pending(t, e.c, req.ID); !ok || st.Change != second.ID {
			t.Errorf("pending outcome = %+v, %v; want it to name the later change", st, ok)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) { // not stored yet: the agent waits for it
		e := newEnv(t)
		wantCode(t, e.c.Apply(t.Context(), change(request(9, "dr-lee", at(4, 9, 0)), services.ActionCancel, "")), services.ENotFound, "")
	})
}

func pendingStatus(t *testing.T, c *console.Console, id string) services.Status {
	t.Helper()
	st, ok := connectortest.Pending(t, c, id)
	if !ok {
		t.Fatalf("no pending outcome for %s", id)
	}
	return st
}

// TestPage_Cancelled: the front desk sees a patient's cancellation among the
// decisions, and the request is no longer pending.
func TestPage_Cancelled(t *testing.T) {
	e := newEnv(t)
	req := request(1, "dr-lee", at(4, 9, 0))
	e.mustStore(t, req)
	if err := e.c.Apply(t.Context(), change(req, services.ActionCancel, "")); err != nil {
		t.Fatal(err)
	}
	body, _ := getPage(t, e.c)
	if !strings.Contains(body, "cancelled by the patient") || strings.Contains(body, `action="/requests/`+req.ID+`/confirm"`) {
		t.Errorf("page: cancellation shown %v, still confirmable %v", strings.Contains(body, "cancelled by the patient"),
			strings.Contains(body, `action="/requests/`+req.ID+`/confirm"`))
	}
}
