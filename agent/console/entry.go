package console

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/clinicrelay/clinicrelay/services"
)

// Statuses of a request on the console. StatusPending is a request the
// clinic has not decided yet (services.StateDelivered); the others are the
// services states of the same name.
const (
	StatusPending   = "pending"
	StatusBooked    = string(services.StateBooked)
	StatusDeclined  = string(services.StateDeclined)
	StatusProposed  = string(services.StateProposed)
	StatusCancelled = string(services.StateCancelled)
	StatusAll       = "all"
)

// Entry is a stored request as the front desk sees it. It holds PHI.
type Entry struct {
	ID            string    `json:"id"`
	SlotID        string    `json:"slot_id"`
	ProviderID    string    `json:"provider_id"`
	Start         time.Time `json:"start"`
	Name          string    `json:"name"`
	BirthDate     string    `json:"birth_date,omitempty"` // the four details: not in a list (summary)
	Phone         string    `json:"phone,omitempty"`
	Email         string    `json:"email,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	Status        string    `json:"status"` // StatusPending, StatusBooked, StatusDeclined, StatusProposed or StatusCancelled
	DeclineReason string    `json:"decline_reason"`
	ProposedSlot  string    `json:"proposed_slot"`
	ReceivedAt    time.Time `json:"received_at"`
	DecidedAt     time.Time `json:"decided_at,omitzero"`
	// PortalVerified: sent signed in to the clinic's portal with the email
	// the clinic's records hold (services.Request.PortalVerified).
	PortalVerified bool `json:"portal_verified,omitempty"`
	// NewPatient is what the patient said: never been (true), been
	// (false), or nothing (nil).
	NewPatient *bool `json:"new_patient,omitempty"`
}

// Newness is NewPatient in words for the pages: "new patient",
// "existing patient", or "".
func (e Entry) Newness() string {
	switch {
	case e.NewPatient == nil:
		return ""
	case *e.NewPatient:
		return "new patient"
	}
	return "existing patient"
}

func newEntry(r *record) Entry {
	provider, start, _ := services.ParseSlotID(r.Request.SlotID) // checked by Store
	status := string(r.State)
	if r.State == services.StateDelivered {
		status = StatusPending
	}
	return Entry{
		ID:             r.Request.ID,
		SlotID:         r.Request.SlotID,
		ProviderID:     provider,
		Start:          start,
		Name:           r.Request.Name,
		BirthDate:      r.Request.BirthDate,
		Phone:          r.Request.Phone,
		Email:          r.Request.Email,
		Reason:         r.Request.Reason,
		Status:         status,
		DeclineReason:  r.DeclineReason,
		ProposedSlot:   r.ProposedSlot,
		ReceivedAt:     r.ReceivedAt,
		DecidedAt:      r.DecidedAt,
		PortalVerified: r.Request.PortalVerified,
		NewPatient:     r.Request.NewPatient,
	}
}

// summary is e without the patient's details (birth date, phone, email,
// reason): what a list shows; opening one request shows them, and is
// audited.
func (e Entry) summary() Entry {
	e.BirthDate, e.Phone, e.Email, e.Reason = "", "", "", ""
	return e
}

// Requests lists the stored requests with the given status (StatusAll or ""
// for all), by slot start then ID.
func (c *Console) Requests(ctx context.Context, status string) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch status {
	case "":
		status = StatusAll
	case StatusAll, StatusPending, StatusBooked, StatusDeclined, StatusProposed, StatusCancelled:
	default:
		return nil, fieldError("status", "status must be one of pending, booked, declined, proposed, cancelled, all")
	}
	out := []Entry{}
	err := c.db.View(func(tx *bolt.Tx) error {
		return c.forEachRecord(tx, func(r *record) error {
			if e := newEntry(r); status == StatusAll || e.Status == status {
				out = append(out, e)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("console: list requests: %w", err)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if n := a.Start.Compare(b.Start); n != 0 {
			return n
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}
