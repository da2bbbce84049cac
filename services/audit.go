package services

import (
	"context"
	"regexp"
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
	AuditRequestViewed    = "request-viewed"    // staff: a request's details opened at the console (User)
	AuditRequestDecided   = "request-decided"   // staff: confirmed, declined or proposed at the console (User)
	AuditPortalChecked    = "portal-checked"    // agent: the clinic's records were searched for a portal email (Detail: known or unknown)
	AuditPortalDetails    = "portal-details"    // agent: a signed-in patient's details given, sealed to their session key
	AuditCredsIssued      = "creds-issued"      // operator: agent or operator creds
	AuditClinicRevoked    = "clinic-revoked"
	AuditClinicPurged     = "clinic-purged"
)

// IsStaffAction reports whether action is one a clinic's staff user makes
// (at the console): those events name the user (AuditEvent.User), and the
// agent sends them on to the relay's AUDIT.
func IsStaffAction(action string) bool {
	switch action {
	case AuditRequestViewed, AuditRequestDecided, AuditPortalGranted:
		return true
	}
	return false
}

// CheckStaffName says why name cannot name a clinic's staff user, or nil:
// 2 to 40 lower-case letters, digits, dots, dashes or underscores, starting
// with a letter or digit.
func CheckStaffName(name string) error {
	if !staffNameRE.MatchString(name) {
		var fe FieldErrors
		fe.Add("name", "name must be 2 to 40 lower-case letters, digits, dots, dashes or underscores, starting with a letter or digit")
		return fe.Err()
	}
	return nil
}

var staffNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,39}$`)

// AuditClinicRelay is the clinic ID of events about the relay itself.
const AuditClinicRelay = "_relay"

// AuditEvent records one access: who did what to which request, never PHI.
type AuditEvent struct {
	At     time.Time `json:"at"`
	Clinic string    `json:"clinic"`
	Action string    `json:"action"`
	Actor  string    `json:"actor"` // patient, agent, staff, operator, relay
	// User is the clinic's staff user who acted (Actor "staff"), as the
	// clinic's agent names them: the relay checks its form, not who it is.
	User      string `json:"user,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	IP        string `json:"ip,omitempty"`
	Detail    string `json:"detail,omitempty"` // e.g. the outcome's state
}

// Auditor records events. It must not block the caller on storage: a lost
// event is logged by the implementation.
type Auditor interface {
	Audit(ctx context.Context, ev AuditEvent)
}
