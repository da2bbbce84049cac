package services

import (
	"context"
	"strings"
	"time"
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

// PendingKeys returns req's email (trimmed, lower-case) and phone (its digits).
func PendingKeys(req Request) []PendingKey {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, req.Phone)
	return []PendingKey{{Field: "email", Value: strings.ToLower(strings.TrimSpace(req.Email))}, {Field: "phone", Value: digits}}
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
func (b *Booker) reserve(ctx context.Context, req Request, until time.Time) error {
	if b.Pending == nil {
		return nil
	}
	return b.Pending.Reserve(ctx, req.ClinicID, req.ID, PendingKeys(req), until)
}

// unreserve drops what reserve counted, for a request whose hold failed; a
// request that fails later is dropped by the adapter once its status is gone.
func (b *Booker) unreserve(ctx context.Context, req Request) {
	if b.Pending != nil {
		// Best effort: an entry left behind drops out once the adapter
		// finds no status for it.
		b.Pending.Release(context.WithoutCancel(ctx), req.ClinicID, req.ID, PendingKeys(req))
	}
}
