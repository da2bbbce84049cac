package services_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

// memSwapper versions memStatuses: each write bumps a key's revision.
type memSwapper struct {
	s   *memStatuses
	rev map[string]uint64
}

func (m *memSwapper) GetStatusRev(ctx context.Context, clinic, id string) (services.Status, uint64, error) {
	st, err := m.s.GetStatus(ctx, clinic, id)
	return st, m.rev[clinic+"/"+id], err
}

func (m *memSwapper) SwapStatus(ctx context.Context, st services.Status, rev uint64) (uint64, error) {
	key := st.ClinicID + "/" + st.RequestID
	if m.rev[key] != rev {
		return 0, services.Errorf(services.EConflict, "changed")
	}
	if _, err := m.s.PutStatus(ctx, st); err != nil {
		return 0, err
	}
	m.rev[key]++
	return m.rev[key], nil
}

type memChanges struct {
	clinic *services.Opener
	got    []services.Change
	err    error
}

func (m *memChanges) PublishChange(_ context.Context, q services.QueuedChange) error {
	if m.err != nil {
		return m.err
	}
	ch, err := m.clinic.OpenChange(q.Sealed)
	if err != nil {
		return err
	}
	if ch.RequestID != q.RequestID || ch.ClinicID != q.ClinicID || ch.SlotID != q.SlotID || ch.ID != q.ID {
		return errors.New("routing IDs differ from the sealed change's")
	}
	if err := ch.Validate(); err != nil {
		return err
	}
	m.got = append(m.got, ch)
	return nil
}

// booked makes a request on freeSlot and sets its status to state.
func booked(t *testing.T, state services.State) (*booking, *memSwapper, *memChanges, string) {
	t.Helper()
	b := newBooking(t)
	res, err := b.Request(t.Context(), "maple", bookingRequest())
	if err != nil {
		t.Fatal(err)
	}
	sw := &memSwapper{s: b.statuses, rev: map[string]uint64{}}
	mc := &memChanges{clinic: b.outbox.clinic}
	b.Swapper, b.Changes = sw, mc
	st := res.Status
	st.State = state
	b.statuses.byKey["maple/"+st.RequestID] = st
	return b, sw, mc, res.Token
}

func TestBooker_Cancel(t *testing.T) {
	b, _, mc, token := booked(t, services.StateBooked)
	st, err := b.Cancel(t.Context(), token)
	if err != nil || st.State != services.StateCancelled {
		t.Fatalf("Cancel() = %+v, %v", st, err)
	}
	if len(mc.got) != 1 || mc.got[0].Action != services.ActionCancel || mc.got[0].RequestID != st.RequestID {
		t.Fatalf("queued changes = %+v", mc.got)
	}
	if _, err := b.Cancel(t.Context(), token); services.ErrorCode(err) != services.EConflict {
		t.Errorf("second Cancel() = %v, want EConflict", err)
	}
}

func TestBooker_Reschedule(t *testing.T) {
	later := services.Slot{ID: "dr-lee_20260306T1400Z", ProviderID: "dr-lee", Start: freeSlot.Start.AddDate(0, 0, 1)}
	t.Run("OK", func(t *testing.T) {
		b, _, mc, token := booked(t, services.StateBooked)
		b.dir.free["maple/"+later.ID] = later
		st, err := b.Reschedule(t.Context(), token, later.ID)
		if err != nil || st.State != services.StateReceived || st.SlotID != later.ID {
			t.Fatalf("Reschedule() = %+v, %v", st, err)
		}
		if got := b.holds.heldBy("maple", later.ID); got != st.RequestID {
			t.Errorf("new slot held by %q, want %q", got, st.RequestID)
		}
		if len(mc.got) != 1 || mc.got[0].SlotID != later.ID {
			t.Errorf("queued changes = %+v", mc.got)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) { // not free
		b, _, mc, token := booked(t, services.StateBooked)
		if _, err := b.Reschedule(t.Context(), token, later.ID); services.ErrorCode(err) != services.EConflict {
			t.Fatalf("Reschedule() = %v, want EConflict", err)
		}
		if len(mc.got) != 0 {
			t.Errorf("queued %+v", mc.got)
		}
	})
	t.Run("AcceptProposal", func(t *testing.T) { // not free publicly: the clinic holds it
		b, _, _, token := booked(t, services.StateProposed)
		_, id, _ := services.ParseStatusToken(token)
		st := b.statuses.byKey["maple/"+id]
		st.ProposedSlot = later.ID
		b.statuses.byKey["maple/"+id] = st
		if got, err := b.Reschedule(t.Context(), token, later.ID); err != nil || got.SlotID != later.ID {
			t.Fatalf("Reschedule(proposed) = %+v, %v", got, err)
		}
	})
	t.Run("ErrPublish", func(t *testing.T) { // the status and the new hold are put back
		b, _, mc, token := booked(t, services.StateBooked)
		b.dir.free["maple/"+later.ID] = later
		mc.err = services.Errorf(services.EUnavailable, "publish: no responders")
		_, id, _ := services.ParseStatusToken(token)
		before := b.statuses.byKey["maple/"+id]
		if _, err := b.Reschedule(t.Context(), token, later.ID); services.ErrorCode(err) != services.EUnavailable {
			t.Fatalf("Reschedule() = %v, want EUnavailable", err)
		}
		if got := b.statuses.byKey["maple/"+id]; got.State != before.State || got.SlotID != before.SlotID {
			t.Errorf("status = %+v, want it put back to %+v", got, before)
		}
		if got := b.holds.heldBy("maple", later.ID); got != "" {
			t.Errorf("new slot still held by %q", got)
		}
	})
	t.Run("ErrClosed", func(t *testing.T) {
		b, _, _, token := booked(t, services.StateDeclined)
		b.dir.free["maple/"+later.ID] = later
		if _, err := b.Reschedule(t.Context(), token, later.ID); services.ErrorCode(err) != services.EConflict {
			t.Fatalf("Reschedule(declined) = %v, want EConflict", err)
		}
	})
	t.Run("ErrSwapped", func(t *testing.T) { // the clinic decided meanwhile: the patient looks again
		b, sw, mc, token := booked(t, services.StateDelivered)
		b.dir.free["maple/"+later.ID] = later
		_, id, _ := services.ParseStatusToken(token)
		sw.rev["maple/"+id] = 7
		b.Swapper = &racingSwapper{memSwapper: sw}
		if _, err := b.Reschedule(t.Context(), token, later.ID); services.ErrorCode(err) != services.EConflict {
			t.Fatalf("Reschedule() = %v, want EConflict", err)
		}
		if len(mc.got) != 0 || b.holds.heldBy("maple", later.ID) != "" {
			t.Errorf("queued %+v, new slot held by %q", mc.got, b.holds.heldBy("maple", later.ID))
		}
	})
}

// racingSwapper's status changes between the read and the write.
type racingSwapper struct{ *memSwapper }

func (r *racingSwapper) GetStatusRev(ctx context.Context, clinic, id string) (services.Status, uint64, error) {
	st, rev, err := r.memSwapper.GetStatusRev(ctx, clinic, id)
	r.rev[clinic+"/"+id]++
	return st, rev, err
}

// ttlHolds records hold TTLs and extensions.
type ttlHolds struct {
	*memHolds
	ttls     []time.Duration
	extended []time.Duration
}

func (h *ttlHolds) Hold(ctx context.Context, clinic, slot, id string, ttl time.Duration) (uint64, error) {
	h.ttls = append(h.ttls, ttl)
	return h.memHolds.Hold(ctx, clinic, slot, id, ttl)
}

func (h *ttlHolds) ExtendHold(_ context.Context, clinic, slot, id string, rev uint64, ttl time.Duration) error {
	if h.heldBy(clinic, slot) != id {
		return services.Errorf(services.EConflict, "hold released")
	}
	h.extended = append(h.extended, ttl)
	return nil
}

// TestBooker_Request_HoldLapses: until the request is queued, its hold lasts
// HoldTTL only (a relay that stops in between leaves no hold for long); once
// queued, until the slot starts.
func TestBooker_Request_HoldLapses(t *testing.T) {
	b := newBooking(t)
	h := &ttlHolds{memHolds: b.holds}
	b.Booker.Holds = h
	if _, err := b.Request(t.Context(), "maple", bookingRequest()); err != nil {
		t.Fatal(err)
	}
	b.Stop() // the hold is extended once the patient has their answer
	untilStart := freeSlot.Start.Sub(bookNow)
	if len(h.ttls) != 1 || h.ttls[0] != b.HoldTTL {
		t.Errorf("hold TTLs = %v, want [%s]", h.ttls, b.HoldTTL)
	}
	if len(h.extended) != 1 || h.extended[0] != untilStart {
		t.Errorf("extended to %v, want [%s]", h.extended, untilStart)
	}
}

// TestBooker_Policy: the provider's booking policy holds for a new request,
// for a new time the patient picks, and for a booked visit's cancellation;
// the time the clinic proposed is accepted whatever the notice.
func TestBooker_Policy(t *testing.T) {
	later := services.Slot{ID: "dr-lee_20260306T1400Z", ProviderID: "dr-lee", Start: freeSlot.Start.AddDate(0, 0, 1)}
	tooSoon := services.BookingPolicy{NoticeMinutes: int(later.Start.Sub(bookNow).Minutes()) + 1}
	t.Run("Request", func(t *testing.T) {
		b := newBooking(t)
		b.dir.policies = map[string]services.BookingPolicy{"dr-lee": tooSoon}
		_, err := b.Request(t.Context(), "maple", bookingRequest())
		if e, ok := err.(*services.Error); !ok || e.Code != services.EInvalid || e.FieldKeys["slot_id"] != "field.slot_id.notice" {
			t.Fatalf("Request() = %v, want the slot_id too soon", err)
		}
		if len(b.holds.held) != 0 || len(b.outbox.published) != 0 {
			t.Error("a request refused by the policy held or queued something")
		}
	})
	t.Run("Reschedule", func(t *testing.T) {
		b, _, mc, token := booked(t, services.StateBooked)
		b.dir.free["maple/"+later.ID] = later
		b.dir.policies = map[string]services.BookingPolicy{"dr-lee": tooSoon}
		if _, err := b.Reschedule(t.Context(), token, later.ID); services.ErrorCode(err) != services.EInvalid || len(mc.got) != 0 {
			t.Fatalf("Reschedule() = %v (queued %d), want invalid and nothing queued", err, len(mc.got))
		}
	})
	t.Run("AcceptProposal", func(t *testing.T) {
		b, _, _, token := booked(t, services.StateProposed)
		_, id, _ := services.ParseStatusToken(token)
		st := b.statuses.byKey["maple/"+id]
		st.ProposedSlot = later.ID
		b.statuses.byKey["maple/"+id] = st
		b.dir.policies = map[string]services.BookingPolicy{"dr-lee": tooSoon}
		if _, err := b.Reschedule(t.Context(), token, later.ID); err != nil {
			t.Fatalf("accepting the clinic's proposal: %v", err)
		}
	})
	t.Run("CancelWithinCutoff", func(t *testing.T) {
		b, _, mc, token := booked(t, services.StateBooked)
		b.dir.policies = map[string]services.BookingPolicy{"dr-lee": {CutoffHours: services.MaxCutoffHours}}
		if _, err := b.Cancel(t.Context(), token); services.ErrorCode(err) != services.EInvalid || len(mc.got) != 0 {
			t.Fatalf("Cancel() = %v (queued %d), want invalid and nothing queued", err, len(mc.got))
		}
	})
}
