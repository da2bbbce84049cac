package jetstream

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// PendingGrace is how long a counted request with no status yet still
// counts: the time between Reserve and the Booker writing its status. Past
// it, the request failed and its status was undone, so it no longer counts.
const PendingGrace = time.Minute

// pendingTries bounds the compare-and-set loop on one key; only the same
// patient sending many requests at once contends on a key.
const pendingTries = 32

// Pending adapts PENDING, with STATUS read alongside, to services.Pending.
// A key is "<clinic>.<hmac>", the HMAC-SHA256 under the relay's secret of
// the normalized email or phone: the relay can count a patient's requests
// without keeping, or being able to recover, who the patient is.
type Pending struct {
	pending, status *Bucket
	secret          []byte
	max             int
	now             func() time.Time
}

var _ services.Pending = (*Pending)(nil)

// NewPending counts up to max (services.DefaultMaxPending if max < 1)
// requests per key. secret must stay the same across restarts, and be the
// same on every relay of a deployment, or counts start again from zero.
func NewPending(js jetstream.JetStream, secret []byte, max int, now func() time.Time) *Pending {
	if max < 1 {
		max = services.DefaultMaxPending
	}
	if now == nil {
		now = time.Now
	}
	return &Pending{pending: NewBucket(js, subjects.BucketPending), status: NewBucket(js, subjects.BucketStatus),
		secret: secret, max: max, now: now}
}

// pendingEntry is one counted request. No PHI: the key is a keyed hash.
type pendingEntry struct {
	RequestID string    `json:"id"`
	Until     time.Time `json:"until"` // the slot's start: it stops counting then
	Added     time.Time `json:"added"`
}

func (p *Pending) key(clinic string, k services.PendingKey) string {
	m := hmac.New(sha256.New, p.secret)
	m.Write([]byte("clinicrelay/pending/" + k.Field + "\x00" + k.Value))
	return subjects.PendingKey(clinic, hex.EncodeToString(m.Sum(nil)[:16]))
}

// Reserve counts requestID under each key, or under none if one is at the cap.
func (p *Pending) Reserve(ctx context.Context, clinic, requestID string, keys []services.PendingKey, until time.Time) error {
	capped := services.FieldErrors{}
	var done []services.PendingKey
	full := func(k services.PendingKey) {
		capped.AddKey(k.Field, "field.pending", fmt.Sprintf("this %s already has %d requests waiting for an answer from this clinic", k.Field, p.max))
	}
	for _, k := range keys {
		key := p.key(clinic, k)
		if capped.Len() > 0 {
			// Past a key at the cap the rest are only looked at, to name
			// every field at it: a count taken and given back would refuse
			// a request of the same patient running alongside.
			if room, err := p.hasRoom(ctx, key, clinic); err == nil && !room {
				full(k)
			}
			continue
		}
		ok, err := p.add(ctx, key, clinic, requestID, until)
		if err != nil {
			p.Release(context.WithoutCancel(ctx), clinic, requestID, done)
			return unavailable("pending", err)
		}
		if !ok {
			full(k)
			continue
		}
		done = append(done, k)
	}
	if capped.Len() == 0 {
		return nil
	}
	p.Release(context.WithoutCancel(ctx), clinic, requestID, done)
	e := capped.Error(services.ELimit, fmt.Sprintf(
		"you already have %d requests waiting at this clinic: wait for its answer, or cancel one, before sending another", p.max))
	e.Key = "form.pending"
	return e
}

// add appends requestID under key unless the live entries are at the cap.
func (p *Pending) add(ctx context.Context, key, clinic, requestID string, until time.Time) (bool, error) {
	for range pendingTries {
		entries, rev, err := p.read(ctx, key)
		if err != nil {
			return false, err
		}
		live := p.live(ctx, clinic, entries)
		if slices.ContainsFunc(live, func(e pendingEntry) bool { return e.RequestID == requestID }) {
			return true, nil
		}
		if len(live) >= p.max {
			return false, nil
		}
		live = append(live, pendingEntry{RequestID: requestID, Until: until.UTC(), Added: p.now().UTC()})
		if err = p.write(ctx, key, live, rev); !errors.Is(err, ErrRevision) {
			return err == nil, err
		}
		backoff(ctx)
	}
	return false, fmt.Errorf("pending %s: still contended after %d tries", clinic, pendingTries)
}

// hasRoom reports whether key has fewer live entries than the cap.
func (p *Pending) hasRoom(ctx context.Context, key, clinic string) (bool, error) {
	entries, _, err := p.read(ctx, key)
	return err == nil && len(p.live(ctx, clinic, entries)) < p.max, err
}

// Release removes requestID from each key.
func (p *Pending) Release(ctx context.Context, clinic, requestID string, keys []services.PendingKey) error {
	var errs []error
	for _, k := range keys {
		errs = append(errs, p.remove(ctx, p.key(clinic, k), requestID))
	}
	return errors.Join(errs...)
}

func (p *Pending) remove(ctx context.Context, key, requestID string) error {
	for range pendingTries {
		entries, rev, err := p.read(ctx, key)
		if err != nil || rev == 0 {
			return err
		}
		n := len(entries)
		entries = slices.DeleteFunc(entries, func(e pendingEntry) bool { return e.RequestID == requestID })
		if len(entries) == n {
			return nil
		}
		if err = p.write(ctx, key, entries, rev); !errors.Is(err, ErrRevision) {
			return err
		}
		backoff(ctx)
	}
	return fmt.Errorf("pending: still contended after %d tries", pendingTries)
}

// read returns key's entries and revision (0: no value).
func (p *Pending) read(ctx context.Context, key string) ([]pendingEntry, uint64, error) {
	e, err := p.pending.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var entries []pendingEntry
	if json.Unmarshal(e.Value, &entries) != nil {
		entries = nil // unreadable: start the count again rather than lock the patient out
	}
	return entries, e.Revision, nil
}

// write stores entries under key if it is still at rev (0: has no value);
// an empty list deletes the key.
func (p *Pending) write(ctx context.Context, key string, entries []pendingEntry, rev uint64) error {
	if len(entries) == 0 {
		if rev == 0 {
			return nil
		}
		return p.pending.Delete(ctx, key, rev)
	}
	b, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = p.pending.Create(ctx, key, b, 0)
	} else {
		_, err = p.pending.Update(ctx, key, b, rev)
	}
	return err
}

// live keeps the entries that still count: before their slot, and with a
// status not final (or none yet, within PendingGrace of being added). A
// status that cannot be read counts, so a NATS hiccup lifts no cap.
func (p *Pending) live(ctx context.Context, clinic string, entries []pendingEntry) []pendingEntry {
	now := p.now()
	return slices.DeleteFunc(entries, func(e pendingEntry) bool {
		if !now.Before(e.Until) {
			return true
		}
		var st services.Status
		_, err := GetJSON(ctx, p.status, subjects.StatusKey(clinic, e.RequestID), &st)
		switch {
		case errors.Is(err, ErrNotFound):
			return now.Sub(e.Added) > PendingGrace
		case err != nil:
			return false
		}
		return st.At(now).Final()
	})
}

// backoff waits a few milliseconds before a compare-and-set is tried again.
func backoff(ctx context.Context) {
	t := time.NewTimer(time.Duration(1+rand.IntN(10)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
