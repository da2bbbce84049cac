// Package portal is the patient portal's JetStream side: its store
// (services.PortalStore over PORTAL and PORTAL_TOKENS, every value sealed
// with the relay's portal key) and the relay's handler of the clinics'
// answers to its checks.
package portal

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/keybox"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// Store keeps the portal's records in PORTAL (accounts) and PORTAL_TOKENS
// (checks, links, sessions, each with a TTL). Every value is AES-256-GCM
// sealed under a key derived from the relay's secret, bound to its key
// (AAD): NATS, its disk and its backups see ciphertext and hashes only.
type Store struct {
	accounts, tokens *cjs.Bucket
	box              *keybox.Box
	emailKey         []byte
}

var _ services.PortalStore = (*Store)(nil)

// NewStore returns the store on js. secret is the relay's (the same on
// every relay of a deployment): the sealing key and the email hash's key
// are derived from it.
func NewStore(js jetstream.JetStream, secret []byte) *Store {
	box, _ := keybox.New(derive(secret, "clinicrelay/portal-seal")) // an HMAC-SHA256: 32 bytes
	return &Store{accounts: cjs.NewBucket(js, subjects.BucketPortal), tokens: cjs.NewBucket(js, subjects.BucketPortalTokens),
		box: box, emailKey: derive(secret, "clinicrelay/portal-email")}
}

func derive(secret []byte, label string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// EmailKey is the HMAC of the clinic and the address as the portal
// compares it (services.PortalEmail, not CanonicalEmail: "bob+x@corp.example"
// may be another mailbox than "bob@corp.example", and must not reach its
// account), 32 hex digits.
func (s *Store) EmailKey(clinic, email string) string {
	m := hmac.New(sha256.New, s.emailKey)
	m.Write([]byte(clinic + "\x00" + services.PortalEmail(email)))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

func (s *Store) seal(key string, v any) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return s.box.Seal(nil, key, plain), nil
}

func (s *Store) open(key string, b []byte, v any) error {
	plain, err := s.box.Open(key, b)
	if err != nil {
		return errors.New("portal record: does not open with this relay's key")
	}
	return json.Unmarshal(plain, v)
}

// domain maps the bucket's errors to the domain's codes.
func domain(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cjs.ErrNotFound):
		return services.Errorf(services.ENotFound, "no such %s", what)
	case errors.Is(err, cjs.ErrRevision):
		return services.Errorf(services.EConflict, "the %s changed since it was read", what)
	}
	return &services.Error{Code: services.EUnavailable, Message: "the portal cannot be reached; try again in a minute",
		Err: fmt.Errorf("%s: %w", what, err)}
}

func (s *Store) put(ctx context.Context, b *cjs.Bucket, what, key string, v any, ttl time.Duration) error {
	val, err := s.seal(key, v)
	if err != nil {
		return err
	}
	_, err = b.PutTTL(ctx, key, val, wholeSeconds(ttl))
	return domain(what, err)
}

func (s *Store) get(ctx context.Context, b *cjs.Bucket, what, key string, v any) (uint64, error) {
	e, err := b.Get(ctx, key)
	if err != nil {
		return 0, domain(what, err)
	}
	if err := s.open(key, e.Value, v); err != nil {
		return 0, &services.Error{Code: services.EInternal, Message: "a portal record does not open", Err: err}
	}
	return e.Revision, nil
}

// PutToken keeps a short-lived record of kind (services.Portal*Record).
func (s *Store) PutToken(ctx context.Context, clinic, kind, key string, v any, ttl time.Duration) error {
	return s.put(ctx, s.tokens, "portal record", subjects.PortalKey(clinic, kind+key), v, ttl)
}

// SwapToken writes a short-lived record at rev (0: only if there is none).
func (s *Store) SwapToken(ctx context.Context, clinic, kind, key string, v any, rev uint64, ttl time.Duration) (uint64, error) {
	k := subjects.PortalKey(clinic, kind+key)
	val, err := s.seal(k, v)
	if err != nil {
		return 0, err
	}
	ttl = wholeSeconds(ttl)
	var nrev uint64
	if rev == 0 {
		nrev, err = s.tokens.Create(ctx, k, val, ttl)
	} else {
		nrev, err = s.tokens.UpdateTTL(ctx, k, val, rev, ttl)
	}
	return nrev, domain("portal record", err)
}

// wholeSeconds is ttl in whole seconds, rounded up (the server takes no
// less than a second).
func wholeSeconds(ttl time.Duration) time.Duration {
	return (max(ttl, time.Second) + time.Second - 1).Truncate(time.Second)
}

// Token reads a short-lived record into v.
func (s *Store) Token(ctx context.Context, clinic, kind, key string, v any) (uint64, error) {
	return s.get(ctx, s.tokens, "portal record", subjects.PortalKey(clinic, kind+key), v)
}

// DropToken deletes a short-lived record; at rev > 0 only if it is still
// at rev (a link used once: the first delete has it).
func (s *Store) DropToken(ctx context.Context, clinic, kind, key string, rev uint64) error {
	k := subjects.PortalKey(clinic, kind+key)
	if rev == 0 {
		// Only a key that is there: a delete of an absent key leaves a marker.
		if _, err := s.tokens.Get(ctx, k); errors.Is(err, cjs.ErrNotFound) {
			return nil
		}
	}
	return domain("portal record", s.tokens.Delete(ctx, k, rev))
}

// Account is the account of an email key.
func (s *Store) Account(ctx context.Context, clinic, emailKey string) (services.PortalAccount, uint64, error) {
	var a services.PortalAccount
	rev, err := s.get(ctx, s.accounts, "account", subjects.PortalKey(clinic, emailKey), &a)
	return a, rev, err
}

// SaveAccount writes an account at rev (0: a new one); one on a temporary
// password expires with it.
func (s *Store) SaveAccount(ctx context.Context, clinic, emailKey string, a services.PortalAccount, rev uint64) (uint64, error) {
	key := subjects.PortalKey(clinic, emailKey)
	val, err := s.seal(key, a)
	if err != nil {
		return 0, err
	}
	// An account on a temporary password no one used goes with it: a
	// clinic's grants make no key that lasts past PortalTempLife.
	var ttl time.Duration
	if a.MustChange {
		ttl = wholeSeconds(time.Until(a.TempUntil))
	}
	var nrev uint64
	switch {
	case rev == 0:
		nrev, err = s.accounts.Create(ctx, key, val, ttl)
	case ttl > 0:
		nrev, err = s.accounts.UpdateTTL(ctx, key, val, rev, ttl)
	default:
		nrev, err = s.accounts.Update(ctx, key, val, rev)
	}
	return nrev, domain("account", err)
}
