package connectortest_test

import (
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/connector/connectortest"
	"github.com/clinicrelay/clinicrelay/services"
)

// TestMemory: the in-memory connector keeps the contract, so the agent's
// own tests can stand on it.
func TestMemory(t *testing.T) {
	loc, _ := time.LoadLocation("America/Toronto")
	connectortest.Run(t, func(t *testing.T) connectortest.Fixture {
		tomorrow := services.Today(time.Now(), loc).AddDate(0, 0, 1)
		start := time.Date(tomorrow.Year(), tomorrow.Month(), tomorrow.Day(), 9, 0, 0, 0, loc)
		slot := services.Slot{ID: services.SlotID("dr-lee", start), ProviderID: "dr-lee", Start: start.UTC(),
			End: start.Add(30 * time.Minute).UTC()}
		m := connectortest.NewMemory([]services.Provider{{ID: "dr-lee", Name: "Dr. Lee"}}, []services.Slot{slot})
		m.SetClinic(services.Clinic{ID: "maple", Name: "Maple", TimeZone: "America/Toronto"})
		return connectortest.Fixture{Conn: m, Loc: loc, Slot: slot, Book: m.Book}
	})
}

// TestMemory_DecisionsAndMoves: what the suite does not reach: a decline
// frees the slot; a move goes to a free slot, and stays put, with the
// refusal's reason, when the new one is taken.
func TestMemory_DecisionsAndMoves(t *testing.T) {
	loc, _ := time.LoadLocation("America/Toronto")
	tomorrow := services.Today(time.Now(), loc).AddDate(0, 0, 1)
	var slots []services.Slot
	for i := range 3 {
		start := time.Date(tomorrow.Year(), tomorrow.Month(), tomorrow.Day(), 9+i, 0, 0, 0, loc)
		slots = append(slots, services.Slot{ID: services.SlotID("dr-lee", start), ProviderID: "dr-lee", Start: start.UTC()})
	}
	m := connectortest.NewMemory(nil, slots)
	ctx := t.Context()
	free := func() []string {
		_, fs, _ := m.FreeSlots(ctx, tomorrow, tomorrow.AddDate(0, 0, 1), loc)
		var ids []string
		for _, s := range fs {
			ids = append(ids, s.ID)
		}
		return ids
	}
	a, b := connectortest.Request(1, slots[0].ID), connectortest.Request(2, slots[1].ID)
	for _, r := range []services.Request{a, b} {
		if err := m.Store(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Store(ctx, connectortest.Request(3, slots[0].ID)); services.ErrorCode(err) != services.EConflict {
		t.Errorf("a second request on a taken slot: %v, want EConflict", err)
	}
	move := func(r services.Request, to string) services.Status {
		t.Helper()
		ch := services.Change{ID: services.RequestIDFor("move-" + r.ID + to), RequestID: r.ID, ClinicID: "maple",
			Action: services.ActionReschedule, SlotID: to, At: time.Now().UTC()}
		if err := m.Apply(ctx, ch); err != nil {
			t.Fatal(err)
		}
		outs, _ := m.PendingOutcomes(ctx)
		for _, st := range outs {
			if st.RequestID == r.ID {
				return st
			}
		}
		t.Fatalf("no outcome for %s", r.ID)
		return services.Status{}
	}
	if st := move(a, slots[1].ID); st.SlotID != slots[0].ID || st.Reason != services.ReasonMoveRefused {
		t.Errorf("a move to a taken slot: %+v, want it left on %s, refused", st, slots[0].ID)
	}
	if st := move(a, slots[2].ID); st.SlotID != slots[2].ID || st.Reason != "" {
		t.Errorf("a move to a free slot: %+v", st)
	}
	if got := free(); len(got) != 1 || got[0] != slots[0].ID {
		t.Errorf("free after the move: %v, want the slot left", got)
	}
	if err := m.Decline(ctx, b.ID, "away"); err != nil {
		t.Fatal(err)
	}
	if got := free(); len(got) != 2 {
		t.Errorf("free after the decline: %v, want its slot back too", got)
	}
}
