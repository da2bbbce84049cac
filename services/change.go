package services

import (
	"cmp"
	"context"
	"time"

	"github.com/clinicrelay/clinicrelay/subjects"
)

// ReasonMoveRefused is what a patient reads when the new time they chose was
// no longer free in the clinic's system: the request keeps its time.
const ReasonMoveRefused = "The new time you chose was not free at the clinic; your request keeps its time."

// ReasonSlotTaken is what a patient reads when the clinic's system gave the
// requested time to someone else before the request reached it.
const ReasonSlotTaken = "This time was just taken at the clinic. Please choose another."

// Actions of a Change.
const (
	ActionCancel     = "cancel"
	ActionReschedule = "reschedule"
)

// Change is a patient's cancellation of a request, or its move to another
// slot. It travels to the clinic like a request: sealed, on the clinic's
// queue. It carries no PHI, but sealing it proves it came through the relay
// and keeps one envelope format.
type Change struct {
	ID        string    `json:"id"` // unique per change: the queue's dedupe key
	RequestID string    `json:"request_id"`
	ClinicID  string    `json:"clinic_id"`
	Action    string    `json:"action"`            // ActionCancel or ActionReschedule
	SlotID    string    `json:"slot_id,omitempty"` // the new slot of a reschedule
	At        time.Time `json:"at"`
}

// Validate checks a change as the agent receives it.
func (c Change) Validate() error {
	if subjects.ValidRequestID(c.ID) != nil || subjects.ValidRequestID(c.RequestID) != nil ||
		subjects.ValidClinicID(c.ClinicID) != nil {
		return Errorf(EInvalid, "change: bad IDs")
	}
	switch c.Action {
	case ActionCancel:
	case ActionReschedule:
		if subjects.ValidSlotID(c.SlotID) != nil {
			return Errorf(EInvalid, "change: bad slot")
		}
	default:
		return Errorf(EInvalid, "change: unknown action")
	}
	return nil
}

// QueuedChange is a sealed change with its routing IDs, and the revision of
// the hold on the new slot of a reschedule.
type QueuedChange struct {
	ID, RequestID, ClinicID, SlotID string
	Sealed                          Sealed
	HoldRev                         uint64
}

// ChangeOutbox carries changes to the clinic's queue.
type ChangeOutbox interface {
	PublishChange(ctx context.Context, q QueuedChange) error
}

// StatusSwapper reads a status with its revision and writes one only over
// that revision, so a patient's change and the clinic's decision never
// overwrite each other unseen.
type StatusSwapper interface {
	// GetStatusRev returns the status and its revision; ENotFound if none.
	GetStatusRev(ctx context.Context, clinic, requestID string) (Status, uint64, error)
	// SwapStatus writes st if its revision is still rev; EConflict if not.
	SwapStatus(ctx context.Context, st Status, rev uint64) (uint64, error)
}

// Cancel cancels the request of a status token: the status reads cancelled
// at once and the cancellation is queued for the clinic, whose agent frees
// the slot.
func (b *Booker) Cancel(ctx context.Context, token string) (Status, error) {
	return b.change(ctx, token, ActionCancel, "")
}

// Reschedule moves the request of a status token to slotID: the new slot is
// held, the request goes back to the clinic for a decision, and the old slot
// is freed by the clinic's agent. Accepting the time the clinic proposed is a
// reschedule to that slot; the clinic then books it at once.
func (b *Booker) Reschedule(ctx context.Context, token, slotID string) (Status, error) {
	if subjects.ValidSlotID(slotID) != nil {
		return Status{}, &Error{Code: EInvalid, Message: "slot_id is not a slot",
			Fields: map[string]string{"slot_id": "slot_id is not a slot"}}
	}
	return b.change(ctx, token, ActionReschedule, slotID)
}

func (b *Booker) change(ctx context.Context, token, action, slotID string) (Status, error) {
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(b.Deadline, BookingDeadline))
	defer cancel()
	clinic, id, err := ParseStatusToken(token)
	if err != nil {
		return Status{}, err
	}
	now := b.Now().UTC()
	st, rev, err := b.Swapper.GetStatusRev(ctx, clinic, id)
	if err != nil {
		return Status{}, err
	}
	if err := changeAllowed(st.At(now), now, action, slotID); err != nil {
		return Status{}, err
	}
	if p, _, err := ParseSlotID(st.SlotID); err == nil {
		if err := b.Directory.Policy(clinic, p).Changeable(st, now); err != nil {
			return Status{}, err
		}
	}
	to, ok := b.Directory.SealKey(clinic)
	if !ok {
		return Status{}, Errorf(EUnavailable, "the clinic is not ready to take changes")
	}
	ch := Change{ID: RequestIDFor(NewToken()), RequestID: id, ClinicID: clinic, Action: action, SlotID: slotID, At: now}
	sealed, err := b.sealer.Seal(ch, to)
	if err != nil {
		return Status{}, err
	}
	q := QueuedChange{ID: ch.ID, RequestID: id, ClinicID: clinic, SlotID: slotID, Sealed: sealed}
	next := st
	next.UpdatedAt, next.Reason, next.Change = now, "", ch.ID
	if action == ActionCancel {
		next.State = StateCancelled
	} else {
		accept := st.State == StateProposed && slotID == st.ProposedSlot
		_, start, _ := ParseSlotID(slotID)
		if _, free := b.Directory.FreeSlot(clinic, slotID); !accept && !free || !start.After(now) {
			return Status{}, Keyed(EConflict, "form.gone", "that time is no longer free")
		}
		// The clinic's own proposal it may make at any time; a time the
		// patient picks keeps to the policy as a new request does.
		if provider, _, _ := ParseSlotID(slotID); !accept {
			if err := b.Directory.Policy(clinic, provider).Bookable(now, start); err != nil {
				return Status{}, err
			}
		}
		if q.HoldRev, err = b.Holds.Hold(ctx, clinic, slotID, id, max(b.HoldTTL, start.Sub(now))); err != nil {
			return Status{}, err
		}
		next.State, next.SlotID, next.ProposedSlot = StateReceived, slotID, ""
	}
	// The status first, over the revision read: a decision the clinic made
	// meanwhile wins, and the patient is asked to look again.
	if _, err := b.Swapper.SwapStatus(ctx, next, rev); err != nil {
		b.releaseNew(ctx, clinic, slotID, id)
		return Status{}, err
	}
	if err := b.Changes.PublishChange(ctx, q); err != nil {
		// Put the status back as it was, if it is still the one this change
		// wrote (its Change names it).
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		cur, crev, gerr := b.Swapper.GetStatusRev(uctx, clinic, id)
		if gerr == nil && cur.Change == ch.ID {
			_, _ = b.Swapper.SwapStatus(uctx, st, crev)
		}
		b.releaseNew(ctx, clinic, slotID, id)
		return Status{}, err
	}
	return next, nil
}

// releaseNew drops the hold a reschedule took, if it took one.
func (b *Booker) releaseNew(ctx context.Context, clinic, slotID, requestID string) {
	if slotID == "" {
		return
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = b.Holds.Release(uctx, clinic, slotID, requestID)
}

// changeAllowed says whether the patient may still make the change.
func changeAllowed(st Status, now time.Time, action, slotID string) error {
	to := StateReceived
	if action == ActionCancel {
		to = StateCancelled
	}
	if !CanFollow(st.State, to, ByPatient) {
		return Errorf(EConflict, "this request is %s and can no longer be changed", st.State)
	}
	if _, start, err := ParseSlotID(st.SlotID); err == nil && !start.After(now) {
		return Errorf(EConflict, "this appointment has already started")
	}
	if action == ActionReschedule && slotID == st.SlotID && st.State != StateProposed {
		return &Error{Code: EInvalid, Message: "that is already the requested time",
			Fields: map[string]string{"slot_id": "that is already the requested time"}}
	}
	return nil
}
