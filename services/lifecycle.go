package services

import (
	"context"
	"strings"
	"time"
)

// A request's lifecycle, in one place: its states (status.go), who may move
// it from one to the next (CanFollow), the moves themselves (pure functions
// of the current status), and Advance, the one compare-and-set loop that
// writes a move to STATUS. The web front, the clinic's agent and the
// connectors all go through it.
//
//	from \ by   patient               clinic
//	received    received, cancelled   delivered, booked, declined, proposed, cancelled
//	delivered   received, cancelled   delivered, booked, declined, proposed, cancelled
//	booked      received, cancelled   delivered, booked, declined, proposed, cancelled
//	proposed    received, cancelled   delivered, booked, declined, proposed, cancelled
//	declined, expired, cancelled: closed, nobody moves them
//
// A patient's "received" is a new time, which goes back to the clinic; the
// clinic's "cancelled" is the patient's cancellation applied. Expired is
// not written: a request still received after RequestLifetime reads so
// (Status.At).

// Party is who moves a request on.
type Party int

const (
	// ByPatient acts through the web front: a cancellation or a new time.
	ByPatient Party = iota + 1
	// ByClinic acts through its agent: the front desk's or the PMS's decision.
	ByClinic
)

// Valid reports whether s is one of the states of a request.
func (s State) Valid() bool {
	switch s {
	case StateReceived, StateDelivered, StateBooked, StateDeclined, StateProposed, StateExpired, StateCancelled:
		return true
	}
	return false
}

// Final reports whether the clinic has decided (or the request expired or
// was cancelled).
func (s State) Final() bool {
	return s == StateBooked || s == StateDeclined || s == StateProposed || s.Closed()
}

// Closed reports whether nothing can change the request any more: declined,
// expired or cancelled. A booked or proposed request can still be cancelled
// or moved by the patient.
func (s State) Closed() bool {
	return s == StateDeclined || s == StateExpired || s == StateCancelled
}

// CanFollow reports whether by may move a request from state from to to.
func CanFollow(from, to State, by Party) bool {
	if !from.Valid() || from.Closed() {
		return false
	}
	switch by {
	case ByPatient:
		return to == StateReceived || to == StateCancelled
	case ByClinic:
		return to == StateDelivered || to == StateBooked || to == StateDeclined || to == StateProposed ||
			to == StateCancelled
	}
	return false
}

// Step is what a move makes of the current status.
type Step int

const (
	// Stay: the status says so already, or the move does not apply to it;
	// nothing is written.
	Stay Step = iota
	// Write: the move's status is written over the current one.
	Write
	// HoldBack: not now. The status names a patient's change the clinic has
	// not applied yet; the change is on its way, and the clinic's answer to
	// it comes then.
	HoldBack
	// TooLate: the request is closed (declined, expired, cancelled) and the
	// move would reopen it; it is dropped.
	TooLate
)

// A Move is one rule of the lifecycle: from the current status, the next
// one and what to do with it. Moves are pure; Advance reads, applies and
// writes them, and applies a move again to what it finds when its write lost
// a race.
type Move func(cur Status) (Status, Step)

// Deliver moves a request the clinic's agent has stored from received to
// delivered. A status past received is left alone (the outcome is set, or
// it is delivered already), and so is one naming a patient's change: the
// change brings its own status.
func Deliver(now time.Time) Move {
	return func(cur Status) (Status, Step) {
		if cur.State != StateReceived || cur.Change != "" {
			return cur, Stay
		}
		cur.State, cur.UpdatedAt = StateDelivered, now.UTC()
		return cur, Write
	}
}

// DeclineUnread declines, with reason, a request the clinic could not take
// (it could not be read, or its slot was taken in the clinic's system). Only
// a status still received is declined: a forged or replayed copy under a
// real request's ID must not undo its outcome.
func DeclineUnread(slot, reason string, now time.Time) Move {
	return func(cur Status) (Status, Step) {
		if cur.State != StateReceived {
			return cur, Stay
		}
		if slot != "" {
			cur.SlotID = slot
		}
		cur.State, cur.Reason, cur.ProposedSlot, cur.UpdatedAt = StateDeclined, reason, "", now.UTC()
		return cur, Write
	}
}

// ForgetChange clears the patient's change a status names, for a change the
// clinic will never apply (it could not be read): the clinic's outcomes for
// the request are then published again.
func ForgetChange() Move {
	return func(cur Status) (Status, Step) {
		if cur.Change == "" {
			return cur, Stay
		}
		cur.Change = ""
		return cur, Write
	}
}

// Outcome publishes the clinic's decision out. It is held back while the
// status names a patient's change the clinic has not applied yet (one out
// does not answer), so a patient's change is never undone; it is dropped when
// the request is closed; and a status that says so already is left alone.
// The reason goes on one plain line (a PMS's note may have several).
func Outcome(out Status) Move {
	out.Reason = PlainLine(strings.TrimSpace(out.Reason), MaxOutcomeReason)
	return func(cur Status) (Status, Step) {
		switch {
		case cur.Change != "" && cur.Change != out.Change:
			return cur, HoldBack
		case cur.Same(out):
			return cur, Stay
		case !CanFollow(cur.State, out.State, ByClinic):
			return cur, TooLate
		}
		return out, Write
	}
}

// Known is a status its caller knows the revision of (a request carries the
// revision of its first status), which saves Advance reading it first.
type Known struct {
	Status Status
	Rev    uint64
}

// advanceTries bounds how often Advance applies a move again after losing a
// race; each loss means someone else wrote the status meanwhile.
const advanceTries = 3

// Advance applies move to the status of request id, compare-and-set: it
// reads the status (or starts from known, when given), writes what move
// makes of it over that revision and, when someone else wrote meanwhile,
// applies move again to what they wrote. It returns the status as it now
// stands and the move's step. A request with no status is ENotFound; a race
// lost advanceTries times is EConflict.
func Advance(ctx context.Context, store StatusSwapper, clinic, id string, move Move, known *Known) (Status, Step, error) {
	var err error
	for range advanceTries {
		var cur Status
		var rev uint64
		if known != nil {
			cur, rev, known = known.Status, known.Rev, nil
		} else if cur, rev, err = store.GetStatusRev(ctx, clinic, id); err != nil {
			return cur, Stay, err
		}
		next, step := move(cur)
		if step != Write {
			return cur, step, nil
		}
		if _, err = store.SwapStatus(ctx, next, rev); ErrorCode(err) != EConflict {
			return next, step, err
		}
	}
	return Status{}, Stay, err
}

// Effect is what a patient's change does to a request in the clinic's
// system; each connector carries it out in its own terms.
type Effect int

const (
	// EffectNone: the change is moot (the request is closed, or already at
	// the new time); it is answered with the current outcome.
	EffectNone Effect = iota
	// EffectCancel: cancel the request and free its slots.
	EffectCancel
	// EffectAccept: the patient took the time the clinic proposed; book it.
	EffectAccept
	// EffectMove: move the request to the change's slot if the clinic's
	// system has it free (then it waits for a decision again), else keep
	// its time and say why (ReasonMoveRefused).
	EffectMove
)

// ChangeEffect is what change ch does to a request the clinic's system has
// in state, at slot, with proposed the time the clinic proposed (if any).
func ChangeEffect(state State, slot, proposed string, ch Change) Effect {
	switch {
	case state.Closed():
		return EffectNone // cancelled or declined is final; the patient requests anew
	case ch.Action == ActionCancel:
		return EffectCancel
	case state == StateProposed && ch.SlotID == proposed:
		return EffectAccept
	case ch.SlotID == slot && state != StateProposed:
		return EffectNone // applied already
	}
	return EffectMove
}
