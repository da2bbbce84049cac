package services

import "time"

// State is where a request stands. Its transitions, and who makes them, are
// in lifecycle.go.
type State string

// States of a request, in the order a patient sees them.
const (
	StateReceived  State = "received"  // the relay accepted it
	StateDelivered State = "delivered" // the clinic's agent stored it
	StateBooked    State = "booked"
	StateDeclined  State = "declined"
	StateProposed  State = "proposed" // the clinic proposed another time
	StateExpired   State = "expired"
	// StateCancelled: the patient cancelled. The cancellation goes to the
	// clinic like a request; the clinic's agent frees the slot.
	StateCancelled State = "cancelled"
)

// MaxOutcomeReason is the most characters of a Status reason.
const MaxOutcomeReason = 1000

// Status is a request's outcome as kept in STATUS: IDs and times only, no PHI.
type Status struct {
	RequestID string `json:"request_id"`
	ClinicID  string `json:"clinic_id"`
	SlotID    string `json:"slot_id"`
	State     State  `json:"state"`
	// Reason is the clinic's decline reason, shown to the patient: one
	// plain line of at most MaxOutcomeReason characters.
	Reason       string    `json:"reason,omitempty"`
	ProposedSlot string    `json:"proposed_slot,omitempty"`
	UpdatedAt    time.Time `json:"updated_at"`
	// Change names the patient's latest change (a cancellation or a new
	// time): the web sets it when the patient makes one, and the clinic's
	// outcomes carry the last one the clinic has applied. While they
	// differ, the clinic has a change still to apply, and the agent holds
	// its outcomes back rather than undo the patient's.
	Change string `json:"change,omitempty"`
}

// RequestLifetime is how long a request waits for its clinic: REQUESTS
// drops it after that (MaxAge), and its status then reads "expired".
const RequestLifetime = 30 * 24 * time.Hour

// StatusLifetime is how long a status, its contact and its reminder are kept
// after their last change (STATUS, CONTACTS and NOTIFY count a key's age from
// its last write). A status last changes at the latest when its slot is
// booked, proposed or moved, and a slot is then at most Horizon away; so a
// booking's status page, calendar file, reminder and contact outlive the
// appointment by a week, and "expired" stays readable a week past
// RequestLifetime.
const StatusLifetime = max(RequestLifetime, Horizon) + 7*24*time.Hour

// Horizon is how far ahead of now a slot can start: services.DaysAhead days
// of availability, plus the day a clinic east of UTC is ahead.
const Horizon = (DaysAhead + 1) * 24 * time.Hour

// At is the status as it stands at now: a request still "received" after
// RequestLifetime has left the clinic's queue undelivered and reads
// "expired".
func (s Status) At(now time.Time) Status {
	if s.State == StateReceived && now.Sub(s.UpdatedAt) > RequestLifetime {
		s.State = StateExpired
	}
	return s
}

// Same reports whether s and o tell the patient the same: the state, the
// slots, the reason and the change they answer (not when they were written).
func (s Status) Same(o Status) bool {
	return s.State == o.State && s.SlotID == o.SlotID && s.ProposedSlot == o.ProposedSlot && s.Reason == o.Reason &&
		s.Change == o.Change
}

// Final reports whether the clinic has decided.
func (s Status) Final() bool { return s.State.Final() }

// Closed reports whether nothing can change the request any more.
func (s Status) Closed() bool { return s.State.Closed() }
