package services

import "time"

// States of a request, in the order a patient sees them.
const (
	StateReceived  = "received"  // the relay accepted it
	StateDelivered = "delivered" // the clinic's agent stored it
	StateBooked    = "booked"
	StateDeclined  = "declined"
	StateProposed  = "proposed" // the clinic proposed another time
	StateExpired   = "expired"
)

// Status is a request's outcome as kept in STATUS: IDs and times only, no PHI.
type Status struct {
	RequestID    string    `json:"request_id"`
	ClinicID     string    `json:"clinic_id"`
	SlotID       string    `json:"slot_id"`
	State        string    `json:"state"`
	Reason       string    `json:"reason,omitempty"` // the clinic's decline reason, shown to the patient
	ProposedSlot string    `json:"proposed_slot,omitempty"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// Final reports whether the clinic has decided.
func (s Status) Final() bool {
	return s.State == StateBooked || s.State == StateDeclined || s.State == StateProposed || s.State == StateExpired
}
