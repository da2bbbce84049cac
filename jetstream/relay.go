package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// errCodeStreamStoreFailed is nats-server's JSStreamStoreFailedF, which carries
// "maximum messages per subject exceeded"; nats.go has no constant for it.
const errCodeStreamStoreFailed jetstream.ErrorCode = 10077

// Requests adapts REQUESTS, HOLDS and STATUS to the services ports.
type Requests struct {
	*Statuses
	js    jetstream.JetStream
	holds *Bucket
}

var (
	_ services.Holds         = (*Requests)(nil)
	_ services.Outbox        = (*Requests)(nil)
	_ services.Statuses      = (*Requests)(nil)
	_ services.StatusSwapper = (*Requests)(nil)
	_ services.ChangeOutbox  = (*Requests)(nil)
	_ services.HoldExtender  = (*Requests)(nil)
)

// NewRequests returns the adapter over js.
func NewRequests(js jetstream.JetStream) *Requests {
	return &Requests{Statuses: NewStatuses(NewBucket(js, subjects.BucketStatus)), js: js,
		holds: NewBucket(js, subjects.BucketHolds)}
}

// hold is the value under a HOLDS key: who holds the slot.
type hold struct {
	RequestID string `json:"request_id"`
	// Attempt names the Hold call that wrote it, so that a retry tells its
	// own write from another attempt's for the same request (a reschedule
	// sent twice).
	Attempt string `json:"attempt,omitempty"`
}

func unavailable(op string, err error) error {
	return &services.Error{Code: services.EUnavailable, Message: "the booking service is busy, please try again shortly",
		Err: fmt.Errorf("%s: %w", op, err)}
}

// Hold creates the hold key exclusively, with a per-key TTL.
func (r *Requests) Hold(ctx context.Context, clinic, slot, requestID string, ttl time.Duration) (uint64, error) {
	attempt := newMsgID()
	b, _ := json.Marshal(hold{RequestID: requestID, Attempt: attempt})
	key := subjects.HoldKey(clinic, slot)
	rev, err := r.holds.CreateSettled(ctx, key, b, ttl)
	if errors.Is(err, ErrRevision) {
		// Taken, or taken by this very call: an attempt whose answer was
		// lost, stored after all, fails the retry's create.
		var h hold
		if rev, gerr := GetJSON(ctx, r.holds, key, &h); gerr == nil && h.RequestID == requestID && h.Attempt == attempt {
			return rev, nil
		}
		return 0, services.Keyed(services.EConflict, "form.gone", "that time is no longer free")
	}
	if err != nil {
		return 0, unavailable("hold", err)
	}
	return rev, nil
}

// ExtendHold gives requestID's hold at revision rev a new TTL; a hold
// released or changed since is left alone (EConflict).
func (r *Requests) ExtendHold(ctx context.Context, clinic, slot, requestID string, rev uint64, ttl time.Duration) error {
	b, _ := json.Marshal(hold{RequestID: requestID})
	_, err := r.holds.UpdateTTL(ctx, subjects.HoldKey(clinic, slot), b, rev, ttl)
	if errors.Is(err, ErrRevision) {
		return services.Errorf(services.EConflict, "hold released")
	}
	if err != nil {
		return unavailable("hold", err)
	}
	return nil
}

// Release drops the hold if requestID still holds it.
func (r *Requests) Release(ctx context.Context, clinic, slot, requestID string) error {
	return ReleaseHold(ctx, r.holds, subjects.HoldKey(clinic, slot), requestID)
}

// ReleaseHold deletes the hold under key if requestID still holds it: a hold
// that expired and was taken by another patient is left alone.
func ReleaseHold(ctx context.Context, holds *Bucket, key, requestID string) error {
	e, err := holds.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release hold: %w", err)
	}
	var h hold
	if json.Unmarshal(e.Value, &h) != nil || h.RequestID != requestID {
		return nil
	}
	if err := holds.Delete(ctx, key, e.Revision); err != nil && !errors.Is(err, ErrRevision) {
		return fmt.Errorf("release hold: %w", err)
	}
	return nil
}

// PublishRequest queues the sealed request with its ID as Nats-Msg-Id, so a
// retry within the dedupe window is stored once. Headers carry routing IDs
// and keys only, never patient data.
func (r *Requests) PublishRequest(ctx context.Context, q services.Queued) error {
	m := nats.NewMsg(subjects.Requests(q.ClinicID))
	m.Data = q.Sealed.Box
	m.Header.Set(subjects.HeaderRequestID, q.RequestID)
	m.Header.Set(subjects.HeaderClinicID, q.ClinicID)
	m.Header.Set(subjects.HeaderSlotID, q.SlotID)
	m.Header.Set(subjects.HeaderSealedTo, q.Sealed.To)
	m.Header.Set(subjects.HeaderSealedFrom, q.Sealed.From)
	m.Header.Set(subjects.HeaderHoldRevision, strconv.FormatUint(q.Rev.Hold, 10))
	return queue(ctx, r.js, m, q.RequestID, "requests")
}

// queue publishes m to a clinic's queue once per id (publishOnce), and maps
// a refusal past the clinic's cap (DiscardNewPerSubject) to EUnavailable.
func queue(ctx context.Context, js jetstream.JetStream, m *nats.Msg, id, what string) error {
	if err := publishOnce(ctx, js, m, id); err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStreamStoreFailed {
			return services.Errorf(services.EUnavailable, "the clinic has too many %s waiting; please try again later", what)
		}
		return unavailable("publish", err)
	}
	return nil
}

// publishOnce publishes m under Nats-Msg-Id id, settled: a request or change
// is queued exactly once, or not at all, however often its publish has to
// be sent again.
func publishOnce(ctx context.Context, js jetstream.JetStream, m *nats.Msg, id string) error {
	_, err := settle(ctx, js, m, id)
	return err
}

// PublishPortalCheck queues a sealed portal check on the clinic's queue,
// once per check ID.
func (r *Requests) PublishPortalCheck(ctx context.Context, clinic, check string, sealed services.Sealed) error {
	m := nats.NewMsg(subjects.PortalCheck(clinic))
	m.Data = sealed.Box
	m.Header.Set(subjects.HeaderRequestID, check)
	m.Header.Set(subjects.HeaderClinicID, clinic)
	m.Header.Set(subjects.HeaderSealedTo, sealed.To)
	m.Header.Set(subjects.HeaderSealedFrom, sealed.From)
	return queue(ctx, r.js, m, check, "portal checks")
}

// PublishChange queues a sealed change on the clinic's queue, once per
// change ID.
func (r *Requests) PublishChange(ctx context.Context, q services.QueuedChange) error {
	m := nats.NewMsg(subjects.Changes(q.ClinicID))
	m.Data = q.Sealed.Box
	m.Header.Set(subjects.HeaderRequestID, q.RequestID)
	m.Header.Set(subjects.HeaderClinicID, q.ClinicID)
	if q.SlotID != "" {
		m.Header.Set(subjects.HeaderSlotID, q.SlotID)
		m.Header.Set(subjects.HeaderHoldRevision, strconv.FormatUint(q.HoldRev, 10))
	}
	m.Header.Set(subjects.HeaderSealedTo, q.Sealed.To)
	m.Header.Set(subjects.HeaderSealedFrom, q.Sealed.From)
	return queue(ctx, r.js, m, q.ID, "changes")
}
