package services

import (
	"context"
	"time"
)

// Audit actions: each access to patient data leaves one event.
const (
	AuditRequestCreated   = "request-created"   // web: a patient sent a request (with the client's IP)
	AuditRequestDelivered = "request-delivered" // agent: stored in the clinic's system
	AuditRequestOpened    = "request-opened"    // agent: the sealed request was opened
	AuditOutcomeSet       = "outcome-set"       // agent: booked, declined or proposed
	AuditStatusViewed     = "status-viewed"     // web: a status page or API read
	AuditRequestCancelled = "request-cancelled" // web: the patient cancelled
	AuditRequestMoved     = "request-moved"     // web: the patient chose another time
	AuditChangeApplied    = "change-applied"    // agent: a cancellation or new time reached the clinic's system
	AuditIntakeDelivered  = "intake-delivered"  // agent: an intake form reached the clinic's system
	AuditCredsIssued      = "creds-issued"      // operator: agent or operator creds
	AuditClinicRevoked    = "clinic-revoked"
	AuditClinicPurged     = "clinic-purged"
)

// AuditClinicRelay is the clinic ID of events about the relay itself.
const AuditClinicRelay = "_relay"

// AuditEvent records one access: who did what to which request, never PHI.
type AuditEvent struct {
	At        time.Time `json:"at"`
	Clinic    string    `json:"clinic"`
	Action    string    `json:"action"`
	Actor     string    `json:"actor"` // patient, agent, operator, relay
	RequestID string    `json:"request_id,omitempty"`
	IP        string    `json:"ip,omitempty"`
	Detail    string    `json:"detail,omitempty"` // e.g. the outcome's state
}

// Auditor records events. It must not block the caller on storage: a lost
// event is logged by the implementation.
type Auditor interface {
	Audit(ctx context.Context, ev AuditEvent)
}
