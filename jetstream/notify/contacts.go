package notify

import (
	"context"
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

// Contacts keeps patients' contacts in CONTACTS, sealed with the relay's
// notify key: NATS, its store and its backups see only ciphertext.
type Contacts struct {
	b   *cjs.Bucket
	box *keybox.Box
	now func() time.Time
}

var _ services.ContactKeeper = (*Contacts)(nil)

// NewContacts returns CONTACTS on js, sealed with key (32 bytes).
func NewContacts(js jetstream.JetStream, key []byte, now func() time.Time) (*Contacts, error) {
	box, err := keybox.New(key)
	if err != nil {
		return nil, fmt.Errorf("notify key: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Contacts{b: cjs.NewBucket(js, subjects.BucketContacts), box: box, now: now}, nil
}

// KeepContact stores c until the time given (at least a minute from now).
func (cs *Contacts) KeepContact(ctx context.Context, c services.Contact, until time.Time) error {
	key := subjects.ContactKey(c.ClinicID, c.RequestID)
	plain, err := json.Marshal(c)
	if err != nil {
		return err
	}
	sealed := cs.box.Seal(nil, key, plain) // bound to its key: no moving it to another request
	// Whole seconds, rounded up: the contact never goes before until.
	ttl := max(until.Sub(cs.now()), time.Minute)
	ttl = (ttl + time.Second - 1).Truncate(time.Second)
	_, err = cs.b.PutTTL(ctx, key, sealed, ttl)
	return err
}

// Contact returns the contact for a request; ErrNotFound when there is
// none (never kept, expired or forgotten).
func (cs *Contacts) Contact(ctx context.Context, clinic, request string) (services.Contact, error) {
	key := subjects.ContactKey(clinic, request)
	e, err := cs.b.Get(ctx, key)
	if err != nil {
		return services.Contact{}, err
	}
	plain, err := cs.box.Open(key, e.Value)
	if err != nil {
		return services.Contact{}, errors.New("contact: does not open with this relay's notify key")
	}
	var c services.Contact
	if err := json.Unmarshal(plain, &c); err != nil {
		return services.Contact{}, fmt.Errorf("contact: %w", err)
	}
	return c, nil
}

// Forget deletes a request's contact.
func (cs *Contacts) Forget(ctx context.Context, clinic, request string) error {
	return cs.b.Delete(ctx, subjects.ContactKey(clinic, request), 0)
}
