package services

import (
	"context"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
)

// ELimit means the patient has reached a cap on what may wait at one clinic
// (DefaultMaxPending). Retrying soon does not help: a request must be
// answered, cancelled or expire first.
const ELimit = "limit"

// DefaultMaxPending is how many requests not yet final one email, and one
// phone, may have waiting at one clinic.
const DefaultMaxPending = 3

// PendingKey is one way of reaching a patient, normalized so that the same
// address written two ways counts once. It is PHI: the Pending adapter keeps
// only a keyed hash of it.
type PendingKey struct {
	Field string // "email" or "phone", the form field it came from
	Value string
}

// PendingKeys returns req's email and phone in the one form each has
// however it is written (CanonicalEmail, CanonicalPhone), so that a patient
// cannot step around the cap with "ada+2@" or by leaving out the country
// code. country is the clinic's (Clinic.Country).
func PendingKeys(req Request, country string) []PendingKey {
	return []PendingKey{{Field: "email", Value: CanonicalEmail(req.Email)},
		{Field: "phone", Value: CanonicalPhone(req.Phone, country)}}
}

// CanonicalEmail is the mailbox an address reaches: lower-case, without a
// "+tag" (which every large provider delivers to the untagged mailbox), and
// for Gmail without dots in the local part (Gmail ignores them).
func CanonicalEmail(email string) string {
	local, domain, ok := strings.Cut(strings.ToLower(strings.TrimSpace(email)), "@")
	if !ok {
		return local
	}
	local, _, _ = strings.Cut(local, "+")
	if domain == "googlemail.com" {
		domain = "gmail.com"
	}
	if domain == "gmail.com" {
		local = strings.ReplaceAll(local, ".", "")
	}
	return local + "@" + domain
}

// CanonicalPhone is phone in E.164 ("+14165550199"), read as a number of
// country when written without a country code; only its digits when it
// cannot be a number (no country code and a clinic of no country, too many
// digits).
func CanonicalPhone(phone, country string) string {
	if n, err := phonenumbers.Parse(phone, country); err == nil && phonenumbers.IsPossibleNumber(n) {
		return phonenumbers.Format(n, phonenumbers.E164)
	}
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, phone)
}

// Pending counts the requests that are not yet final per email or phone and clinic.
type Pending interface {
	// Reserve counts requestID against each key at clinic until its
	// status is final or until passes; ELimit, naming the fields at the cap,
	// when a key already has the most it may (and nothing is counted).
	Reserve(ctx context.Context, clinic, requestID string, keys []PendingKey, until time.Time) error
	// Release stops counting requestID (its request was not queued).
	Release(ctx context.Context, clinic, requestID string, keys []PendingKey) error
}

// reserve counts req against its patient's email and phone until its slot
// starts; a no-op without b.Pending.
func (b *Booker) reserve(ctx context.Context, req Request, keys []PendingKey, until time.Time) error {
	if b.Pending == nil {
		return nil
	}
	return b.Pending.Reserve(ctx, req.ClinicID, req.ID, keys, until)
}

// unreserve drops what reserve counted, for a request whose hold failed; a
// request that fails later is dropped by the adapter once its status is gone.
func (b *Booker) unreserve(ctx context.Context, req Request, keys []PendingKey) {
	if b.Pending != nil {
		// Best effort: an entry left behind drops out once the adapter
		// finds no status for it.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoGrace)
		defer cancel()
		b.Pending.Release(uctx, req.ClinicID, req.ID, keys)
	}
}
