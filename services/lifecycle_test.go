package services_test

import (
	"context"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

var allStates = []services.State{services.StateReceived, services.StateDelivered, services.StateBooked,
	services.StateDeclined, services.StateProposed, services.StateExpired, services.StateCancelled}

// TestCanFollow: nobody reopens a closed request; a patient only cancels or
// asks for a new time; the clinic never writes received or expired.
func TestCanFollow(t *testing.T) {
	for _, from := range allStates {
		for _, to := range allStates {
			for _, by := range []services.Party{services.ByPatient, services.ByClinic} {
				want := !from.Closed()
				switch by {
				case services.ByPatient:
					want = want && (to == services.StateReceived || to == services.StateCancelled)
				case services.ByClinic:
					want = want && to != services.StateReceived && to != services.StateExpired
				}
				if got := services.CanFollow(from, to, by); got != want {
					t.Errorf("CanFollow(%s, %s, %d) = %v, want %v", from, to, by, got, want)
				}
			}
		}
	}
	if services.CanFollow("pending", services.StateBooked, services.ByClinic) {
		t.Error("an unknown state can be followed")
	}
}

func TestMoves(t *testing.T) {
	now := time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)
	base := services.Status{RequestID: "r", ClinicID: "maple", SlotID: "dr-lee_20260310T1400Z"}
	with := func(state services.State, change string) services.Status {
		st := base
		st.State, st.Change = state, change
		return st
	}
	booked := with(services.StateBooked, "")
	for _, tt := range []struct {
		name  string
		move  services.Move
		cur   services.Status
		want  services.Step
		state services.State
	}{
		{"deliver received", services.Deliver(now), with(services.StateReceived, ""), services.Write, services.StateDelivered},
		{"deliver after an outcome", services.Deliver(now), booked, services.Stay, services.StateBooked},
		{"deliver a moved request", services.Deliver(now), with(services.StateReceived, "c1"), services.Stay, services.StateReceived},
		{"decline unread", services.DeclineUnread("", "unreadable", now), with(services.StateReceived, ""), services.Write, services.StateDeclined},
		{"decline a replay of a booked one", services.DeclineUnread("", "x", now), booked, services.Stay, services.StateBooked},
		{"forget a change", services.ForgetChange(), with(services.StateReceived, "c1"), services.Write, services.StateReceived},
		{"forget no change", services.ForgetChange(), booked, services.Stay, services.StateBooked},
		{"outcome", services.Outcome(booked), with(services.StateDelivered, ""), services.Write, services.StateBooked},
		{"outcome said already", services.Outcome(booked), booked, services.Stay, services.StateBooked},
		{"outcome before the patient's change", services.Outcome(booked), with(services.StateReceived, "c1"), services.HoldBack, services.StateReceived},
		{"outcome answering the change", services.Outcome(with(services.StateDelivered, "c1")), with(services.StateReceived, "c1"), services.Write, services.StateDelivered},
		{"outcome of a cancelled request", services.Outcome(booked), with(services.StateCancelled, ""), services.TooLate, services.StateCancelled},
		{"outcome of a declined request", services.Outcome(booked), with(services.StateDeclined, ""), services.TooLate, services.StateDeclined},
		{"clinic writes received", services.Outcome(with(services.StateReceived, "")), with(services.StateDelivered, ""), services.TooLate, services.StateDelivered},
	} {
		t.Run(tt.name, func(t *testing.T) {
			next, step := tt.move(tt.cur)
			if step != tt.want || next.State != tt.state {
				t.Errorf("step %d state %s, want %d %s", step, next.State, tt.want, tt.state)
			}
			if step == services.Write && next.RequestID != "r" {
				t.Errorf("the move lost the request: %+v", next)
			}
		})
	}
	out := booked
	out.Reason = "  line one\nline two  "
	if next, _ := services.Outcome(out)(with(services.StateDelivered, "")); next.Reason != "line one line two" {
		t.Errorf("outcome reason %q, want it on one line", next.Reason)
	}
}

// racingStore is a versioned store whose status someone else writes just
// before each of the first n swaps.
type racingStore struct {
	*memSwapper
	n     int
	other func(services.Status) services.Status
	swaps int
}

func (r *racingStore) SwapStatus(ctx context.Context, st services.Status, rev uint64) (uint64, error) {
	r.swaps++
	if r.n > 0 {
		r.n--
		cur, crev, _ := r.memSwapper.GetStatusRev(ctx, st.ClinicID, st.RequestID)
		if _, err := r.memSwapper.SwapStatus(ctx, r.other(cur), crev); err != nil {
			return 0, err
		}
	}
	return r.memSwapper.SwapStatus(ctx, st, rev)
}

func TestAdvance(t *testing.T) {
	now := time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)
	received := services.Status{RequestID: "r", ClinicID: "maple", State: services.StateReceived}
	store := func() *memSwapper {
		s := &memSwapper{s: &memStatuses{byKey: map[string]services.Status{}}, rev: map[string]uint64{}}
		_, _ = s.SwapStatus(t.Context(), received, 0)
		return s
	}
	t.Run("OK", func(t *testing.T) {
		s := store()
		st, step, err := services.Advance(t.Context(), s, "maple", "r", services.Deliver(now), nil)
		if err != nil || step != services.Write || st.State != services.StateDelivered {
			t.Fatalf("Advance = %+v %d %v", st, step, err)
		}
		if got, _ := s.s.GetStatus(t.Context(), "maple", "r"); got.State != services.StateDelivered {
			t.Errorf("stored %s", got.State)
		}
	})
	t.Run("KnownSavesARead", func(t *testing.T) {
		s := store()
		_, _, err := services.Advance(t.Context(), &noReads{s}, "maple", "r", services.Deliver(now),
			&services.Known{Status: received, Rev: 1})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("StaleKnownReads", func(t *testing.T) {
		s := store()
		booked := received
		booked.State = services.StateBooked
		_, _ = s.SwapStatus(t.Context(), booked, 1)
		st, step, err := services.Advance(t.Context(), s, "maple", "r", services.Deliver(now),
			&services.Known{Status: received, Rev: 1})
		if err != nil || step != services.Stay || st.State != services.StateBooked {
			t.Errorf("Advance over a stale revision = %+v %d %v, want the outcome left", st, step, err)
		}
	})
	t.Run("LostRaceAppliesAgain", func(t *testing.T) {
		// The patient cancels between the agent's read and its write: the
		// move, applied again, leaves the cancellation alone.
		r := &racingStore{memSwapper: store(), n: 1, other: func(st services.Status) services.Status {
			st.State, st.Change = services.StateCancelled, "c1"
			return st
		}}
		st, step, err := services.Advance(t.Context(), r, "maple", "r", services.Deliver(now), nil)
		if err != nil || step != services.Stay || st.State != services.StateCancelled || r.swaps != 1 {
			t.Errorf("Advance = %+v %d %v after %d swaps, want the cancellation kept", st, step, err, r.swaps)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		r := &racingStore{memSwapper: store(), n: 10, other: func(st services.Status) services.Status {
			st.UpdatedAt = st.UpdatedAt.Add(time.Second)
			return st
		}}
		_, _, err := services.Advance(t.Context(), r, "maple", "r", services.Deliver(now), nil)
		if services.ErrorCode(err) != services.EConflict || r.swaps != 3 {
			t.Errorf("Advance always losing = %v after %d swaps, want EConflict after 3", err, r.swaps)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		s := &memSwapper{s: &memStatuses{byKey: map[string]services.Status{}}, rev: map[string]uint64{}}
		_, _, err := services.Advance(t.Context(), s, "maple", "r", services.Deliver(now), nil)
		if services.ErrorCode(err) != services.ENotFound {
			t.Errorf("Advance with no status = %v, want ENotFound", err)
		}
	})
}

// noReads fails the test's Advance if it reads.
type noReads struct{ *memSwapper }

func (noReads) GetStatusRev(context.Context, string, string) (services.Status, uint64, error) {
	return services.Status{}, 0, services.Errorf(services.EInternal, "read")
}

func TestChangeEffect(t *testing.T) {
	const a, b = "dr-lee_20260310T1400Z", "dr-lee_20260311T1400Z"
	cancel := services.Change{Action: services.ActionCancel}
	move := func(slot string) services.Change {
		return services.Change{Action: services.ActionReschedule, SlotID: slot}
	}
	for _, tt := range []struct {
		state    services.State
		proposed string
		ch       services.Change
		want     services.Effect
	}{
		{services.StateDelivered, "", cancel, services.EffectCancel},
		{services.StateBooked, "", cancel, services.EffectCancel},
		{services.StateCancelled, "", cancel, services.EffectNone},
		{services.StateDeclined, "", move(b), services.EffectNone},
		{services.StateProposed, b, move(b), services.EffectAccept},
		{services.StateProposed, b, move(a), services.EffectMove},
		{services.StateBooked, "", move(a), services.EffectNone},
		{services.StateBooked, "", move(b), services.EffectMove},
		{services.StateDelivered, "", move(b), services.EffectMove},
	} {
		if got := services.ChangeEffect(tt.state, a, tt.proposed, tt.ch); got != tt.want {
			t.Errorf("ChangeEffect(%s, proposed %q, %s %s) = %d, want %d", tt.state, tt.proposed, tt.ch.Action,
				tt.ch.SlotID, got, tt.want)
		}
	}
}
