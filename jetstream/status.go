package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// Statuses adapts STATUS to the services ports, for every writer: the web
// front over its own bucket, a clinic's agent over its agent bucket
// (NewAgentBucket), whose writes the relay checks. services.Advance applies
// the lifecycle's moves through it.
type Statuses struct {
	b *Bucket
}

var (
	_ services.Statuses      = (*Statuses)(nil)
	_ services.StatusSwapper = (*Statuses)(nil)
	_ services.StatusUndoer  = (*Statuses)(nil)
)

// NewStatuses returns the adapter over b, a STATUS bucket.
func NewStatuses(b *Bucket) *Statuses { return &Statuses{b: b} }

// Bucket is the bucket the statuses are in.
func (s *Statuses) Bucket() *Bucket { return s.b }

// statusErr maps a bucket's error to the domain's: a lost compare-and-set is
// EConflict, anything else EUnavailable, except a write the relay refused an
// agent, which stays as the relay worded it (ErrRefused).
func statusErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrRevision):
		return &services.Error{Code: services.EConflict,
			Message: "the clinic has just updated this request; please look again", Err: err}
	case errors.Is(err, ErrRefused):
		return err
	}
	return unavailable("status", err)
}

// PutStatus writes st and returns its revision, settled: a write whose
// answer was lost is sent again and stored once.
func (s *Statuses) PutStatus(ctx context.Context, st services.Status) (uint64, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return 0, fmt.Errorf("encode status: %w", err)
	}
	rev, err := s.b.PutSettled(ctx, subjects.StatusKey(st.ClinicID, st.RequestID), b)
	return rev, statusErr(err)
}

// GetStatus reads a status; ENotFound if there is none.
func (s *Statuses) GetStatus(ctx context.Context, clinic, requestID string) (services.Status, error) {
	st, _, err := s.GetStatusRev(ctx, clinic, requestID)
	return st, err
}

// GetStatusRev reads a status with its revision; ENotFound if there is none.
func (s *Statuses) GetStatusRev(ctx context.Context, clinic, requestID string) (services.Status, uint64, error) {
	var st services.Status
	rev, err := GetJSON(ctx, s.b, subjects.StatusKey(clinic, requestID), &st)
	if errors.Is(err, ErrNotFound) {
		return st, 0, services.Keyed(services.ENotFound, "error.no_request", "no such request")
	}
	if err != nil {
		return st, 0, statusErr(err)
	}
	return st, rev, nil
}

// SwapStatus writes st over revision rev only; EConflict if the key moved on.
func (s *Statuses) SwapStatus(ctx context.Context, st services.Status, rev uint64) (uint64, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return 0, fmt.Errorf("encode status: %w", err)
	}
	nrev, err := s.b.Update(ctx, subjects.StatusKey(st.ClinicID, st.RequestID), b, rev)
	return nrev, statusErr(err)
}

// DeleteStatus removes a status.
func (s *Statuses) DeleteStatus(ctx context.Context, clinic, requestID string) error {
	return statusErr(s.b.Delete(ctx, subjects.StatusKey(clinic, requestID), 0))
}

// DeleteStatusAt deletes a status only while it is at revision rev;
// EConflict if it moved on.
func (s *Statuses) DeleteStatusAt(ctx context.Context, clinic, requestID string, rev uint64) error {
	return statusErr(s.b.Delete(ctx, subjects.StatusKey(clinic, requestID), rev))
}
