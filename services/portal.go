package services

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/clinicrelay/clinicrelay/subjects"
)

// The patient portal: accounts a patient holds at one clinic, kept by the
// relay without clear PHI (PortalStore seals what it keeps, and finds an
// account by a keyed hash of its email). Whether an email belongs to one
// of the clinic's patients is the clinic's to say: the relay asks it,
// sealed (PortalCheck), and only on its yes sends a link to set a password.
// The patient always hears the same, so the portal says nothing of who is
// a patient. portal_service.go is the use cases; this file the types.

// Lifetimes of the portal's records.
const (
	// PortalLinkLife is how long a set-password link works, and how long
	// the relay waits for the clinic's answer to a check.
	PortalLinkLife = 30 * time.Minute
	// PortalIdle ends a session nobody used for this long; PortalSessionMax
	// ends any session this long after sign-in.
	PortalIdle       = 30 * time.Minute
	PortalSessionMax = 12 * time.Hour
	// PortalTempLife is how long a temporary password given by the front
	// desk works unused.
	PortalTempLife = 7 * 24 * time.Hour
	// PortalLockAfter failed sign-ins within PortalLockFor lock the
	// account (or the email, whether an account has it or not) for
	// PortalLockFor.
	PortalLockAfter = 10
	PortalLockFor   = 30 * time.Minute
	// PortalMaxRequests is how many requests an account lists, newest first.
	PortalMaxRequests = 50
)

// PortalCheck is the relay's question to a clinic, sealed to it on its
// queue (subjects.KindPortal): does your record hold this email? The agent
// answers yes or no through the relay (subjects.AgentPortalAnswer); with
// ReplyTo, it gives the patient's details sealed to that key instead.
type PortalCheck struct {
	ID       string `json:"id"` // 32 hex: the queue's dedupe key and what the answer names
	ClinicID string `json:"clinic_id"`
	Email    string `json:"email"`
	// ReplyTo, when set, asks for the patient's details as the clinic has
	// them (PatientDetails), sealed to this public curve key: a signed-in
	// patient's session key, whose private half only their cookie holds.
	ReplyTo string `json:"reply_to,omitempty"`
}

// PatientDetails are what a signed-in patient's booking form is filled
// with, from the clinic's records. PHI: sealed to the patient's session
// key from the clinic to the patient's browser.
type PatientDetails struct {
	Name      string `json:"name"`
	BirthDate string `json:"birth_date"`
	Phone     string `json:"phone"`
	Email     string `json:"email"`
}

// OpenPatientDetails opens a patient's details sealed to their session key.
func (o *Opener) OpenPatientDetails(s Sealed) (PatientDetails, error) {
	var d PatientDetails
	return d, o.open(s, &d)
}

// Validate checks a check as the agent receives it.
func (c PortalCheck) Validate() error {
	if subjects.ValidRequestID(c.ID) != nil || subjects.ValidClinicID(c.ClinicID) != nil {
		return Errorf(EInvalid, "portal check: bad IDs")
	}
	if !ValidEmail(c.Email) {
		return Errorf(EInvalid, "portal check: not an email address")
	}
	if c.ReplyTo != "" && !nkeys.IsValidPublicCurveKey(c.ReplyTo) {
		return Errorf(EInvalid, "portal check: reply_to is not a public curve key")
	}
	return nil
}

// OpenPortalCheck opens a sealed portal check.
func (o *Opener) OpenPortalCheck(s Sealed) (PortalCheck, error) {
	var c PortalCheck
	return c, o.open(s, &c)
}

// PortalAsked is what the relay keeps while the clinic thinks: whom to
// email if it says yes (sealed by the store).
type PortalAsked struct {
	Email string `json:"email,omitempty"`
	Lang  string `json:"lang,omitempty"`
	At    time.Time
	// Session, for a question about a signed-in patient's details, is
	// their session's key: the answer is kept beside it.
	Session string `json:"session,omitempty"`
}

// PortalLink is a set-password link's record, by the hash of its token.
type PortalLink struct {
	EmailKey string    `json:"email_key"` // the account's key (PortalStore.EmailKey)
	Email    string    `json:"email"`     // to ask the clinic for the patient's details once signed in
	At       time.Time `json:"at"`
}

// PortalAccount is a patient's account at one clinic, as the relay keeps it
// (sealed by the store): no name, no email, no birth date.
type PortalAccount struct {
	ID   string `json:"id"`
	Hash string `json:"hash"` // argon2id, PHC string (internal/password)
	// MustChange: the password is a temporary one from the front desk,
	// good until TempUntil, and must be replaced before anything else.
	MustChange bool      `json:"must_change,omitempty"`
	TempUntil  time.Time `json:"temp_until,omitzero"`
	PasswordAt time.Time `json:"password_at"`
	// Gen ends every session of an older generation: a new password and
	// "sign out everywhere" raise it.
	Gen int `json:"gen"`
	// Requests are the requests sent while signed in, newest first.
	Requests []PortalRequest `json:"requests,omitempty"`
}

// PortalRequest is one of an account's requests: its ID and the secret of
// its status page.
type PortalRequest struct {
	ID    string    `json:"id"`
	Token string    `json:"token"` // the status token, as in /r/<token>
	At    time.Time `json:"at"`
}

// PortalSession is a signed-in session, by the hash of its token.
type PortalSession struct {
	AccountID string    `json:"account_id"`
	EmailKey  string    `json:"email_key"`
	Gen       int       `json:"gen"`
	Created   time.Time `json:"created"`
	Renewed   time.Time `json:"renewed"`
	// Asked is the ID of the question about the patient's details asked
	// for the session (its answer may still be on its way).
	Asked string `json:"asked,omitempty"`
}

// Kinds of the portal's short-lived records (PortalStore's tokens).
const (
	PortalAskedRecord   = "c" // a question to the clinic, by its check ID: PortalAsked
	PortalLinkRecord    = "l" // a set-password link, by its token's hash: PortalLink
	PortalSessionRecord = "s" // a session, by its token's hash: PortalSession
	PortalFailRecord    = "f" // an email's failed sign-ins, by its email key (portal_signin.go)
	PortalDetailsRecord = "p" // a session's patient details, sealed to the session key, by the session's key
)

// PortalStore keeps the portal's records, sealed, under their clinic:
// short-lived ones (tokens, by kind and key) with a time to live, accounts
// until they are closed. A missing key is ENotFound; a write or delete at
// a revision the key no longer has is EConflict.
type PortalStore interface {
	// EmailKey is the keyed hash an account is found by (hex, no PHI).
	EmailKey(clinic, email string) string
	PutToken(ctx context.Context, clinic, kind, key string, v any, ttl time.Duration) error
	// SwapToken writes a record only if it is still at rev (0: only if
	// there is none), and returns its new revision.
	SwapToken(ctx context.Context, clinic, kind, key string, v any, rev uint64, ttl time.Duration) (uint64, error)
	// Token reads a record into v and returns its revision.
	Token(ctx context.Context, clinic, kind, key string, v any) (uint64, error)
	// DropToken deletes a record at rev (0: whatever it is; none is nil).
	DropToken(ctx context.Context, clinic, kind, key string, rev uint64) error
	Account(ctx context.Context, clinic, emailKey string) (PortalAccount, uint64, error)
	// SaveAccount writes an account at rev (0: a new one).
	SaveAccount(ctx context.Context, clinic, emailKey string, a PortalAccount, rev uint64) (uint64, error)
}

// PortalTokenKey is the key a secret token is kept under: a hash, so that the
// store's keys open nothing.
func PortalTokenKey(token string) string {
	sum := sha256.Sum256([]byte("clinicrelay/portal-token/" + token))
	return hex.EncodeToString(sum[:16])
}
