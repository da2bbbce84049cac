// Package connector is the contract between the clinic agent and a clinic's
// system (the front-desk console, a FHIR PMS, an in-memory one in tests),
// split by role. It imports no transport: a connector knows nothing of
// NATS, and the agent knows nothing of the clinic's system beyond it.
package connector

import (
	"context"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

// Connector is the clinic's system as the agent sees it: a name, the
// clinic's profile, and the three roles below.
type Connector interface {
	// Name is the connector's kind, shown in the heartbeat ("console", "fhir").
	Name() string
	// SetClinic tells the connector its clinic's public profile (name, zone)
	// once the agent has read it; it may be called again when it changes.
	SetClinic(c services.Clinic)
	SlotSource
	RequestSink
	ChangeSink
}

// SlotSource is where free slots come from.
type SlotSource interface {
	// FreeSlots lists the providers and the free slots that start on the local
	// dates [from, to) in loc.
	FreeSlots(ctx context.Context, from, to time.Time, loc *time.Location) ([]services.Provider, []services.Slot, error)
	// Changed receives a value whenever free slots or outcomes may have changed.
	Changed() <-chan struct{}
}

// RequestSink takes the patients' requests and gives back the clinic's
// decisions on them.
type RequestSink interface {
	// Store keeps req durably. Storing an ID already stored is a no-op that
	// returns nil, so a redelivered request is stored once.
	Store(ctx context.Context, req services.Request) error
	// PendingOutcomes lists statuses decided in the clinic (booked, declined,
	// proposed) that have not yet been marked published.
	PendingOutcomes(ctx context.Context) ([]services.Status, error)
	// MarkPublished records that st reached STATUS; a later decision on the
	// same request makes it pending again.
	MarkPublished(ctx context.Context, st services.Status) error
}

// ChangeSink carries out the patients' changes to stored requests.
type ChangeSink interface {
	// Apply carries out a patient's cancellation or new time (see
	// services.Change): idempotent, ENotFound while the request is not
	// stored, and the outcome queued in PendingOutcomes.
	Apply(ctx context.Context, ch services.Change) error
}

// IntakeSink is a Connector that takes patients' intake forms. A connector
// without it leaves them queued for an agent whose connector has it.
type IntakeSink interface {
	// StoreIntake keeps in durably, with its request (ENotFound while the
	// request is not stored); storing an ID already stored is a no-op.
	StoreIntake(ctx context.Context, in services.Intake) error
}

// PatientDirectory is a Connector that can say whether the clinic's records
// hold a patient's email: the patient portal asks before it sends a sign-up
// link (issue 16), and only the yes or no leaves the clinic.
type PatientDirectory interface {
	// KnowsEmail reports whether a patient of the clinic has the address,
	// letter case and spaces around aside (services.PortalEmail compares):
	// "bob+x@corp.example" is not "bob@corp.example", which may be another
	// person's mailbox.
	KnowsEmail(ctx context.Context, email string) (bool, error)
}

// PatientRecords is a PatientDirectory that also gives a patient's
// details as the clinic has them (name, birth date, phone, email), to fill
// a signed-in patient's booking form: the agent seals them to the
// patient's session key, so the relay carries them but cannot read them.
type PatientRecords interface {
	// PatientDetails are the details of the patient of email (compared as
	// KnowsEmail does); false when no patient has it.
	PatientDetails(ctx context.Context, email string) (services.PatientDetails, bool, error)
}

// StaffAuditor is a Connector whose staff open and decide requests in it
// (the console): the agent gives it its audit trail to the relay, where it
// records which staff user did what to which request (services.AuditEvent's
// User and Action, never patient data), besides any record of its own.
type StaffAuditor interface {
	SetAuditor(a services.Auditor)
}

// PortalAccess is the agent's side of giving a patient portal access with
// a temporary password: only the password's argon2id hash leaves the
// clinic, with the patient's email (the relay keeps a keyed hash of it).
type PortalAccess interface {
	// Grant is EInvalid when the relay refuses the grant, EUnavailable
	// when it cannot be reached.
	// reset replaces a password the patient chose (EConflict without it).
	Grant(ctx context.Context, email, hash string, reset bool) error
}

// PortalGiver is a Connector whose staff give patients portal access (the
// console): the agent hands it its PortalAccess once connected.
type PortalGiver interface {
	SetPortalAccess(p PortalAccess)
}

// ChangeTracker is a Connector that knows what changed: the agent then
// republishes only the days of those slots instead of every day ahead.
type ChangeTracker interface {
	// TakeChanges returns the slots whose days changed since the last call,
	// or all when anything else may have, and forgets them.
	TakeChanges() (slots []string, all bool)
}

// HealthReporter is a Connector that knows whether the clinic's system
// answers: the heartbeat carries it, and the site shows a clinic whose
// system does not answer as not syncing.
type HealthReporter interface {
	// Health is nil while the clinic's system answers, else what is wrong,
	// in words for the clinic's staff and operators (no patient data).
	Health() error
}

// RefusalReporter is a Connector that shows the clinic's staff the writes
// the relay refuses and the slots left out (a day with more free slots than
// it carries, a value that breaks its rules, see docs/security.md): until
// they are fixed, patients online do not see what the clinic's system says.
type RefusalReporter interface {
	// Refused is called with one line per key, sorted (no patient data),
	// whenever the list changes; with none once every write goes through
	// again.
	Refused(lines []string)
}
