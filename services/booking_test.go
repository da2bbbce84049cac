package services_test

import (
	"fmt"

	"context"
	"errors"
	"github.com/nats-io/nkeys"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// The ports of Booker, in memory. Like the NATS adapters, every I/O method
// fails once its ctx is done.

type memHolds struct {
	mu          sync.Mutex
	held        map[string]string // clinic/slot → request ID
	err         error             // returned by Hold when set
	failRelease int               // Release fails this many times first
}

func (h *memHolds) heldBy(clinic, slot string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held[clinic+"/"+slot]
}

var _ services.Holds = (*memHolds)(nil)

func (h *memHolds) Hold(ctx context.Context, clinic, slot, requestID string, ttl time.Duration) (uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if h.err != nil {
		return 0, h.err
	}
	if _, ok := h.held[clinic+"/"+slot]; ok {
		return 0, services.Errorf(services.EConflict, "that time is no longer free")
	}
	h.held[clinic+"/"+slot] = requestID
	return uint64(len(h.held)), nil
}

func (h *memHolds) Release(ctx context.Context, clinic, slot, requestID string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if h.failRelease > 0 {
		h.failRelease--
		return errors.New("nats: connection closed")
	}
	if h.held[clinic+"/"+slot] == requestID {
		delete(h.held, clinic+"/"+slot)
	}
	return nil
}

type memOutbox struct {
	published []services.Request // opened with key, as the clinic would
	clinic    *services.Opener   // the clinic's key
	err       error              // returned by PublishRequest when set
	before    func()             // runs first in PublishRequest, e.g. to cancel the caller's ctx
}

var _ services.Outbox = (*memOutbox)(nil)

func (o *memOutbox) PublishRequest(ctx context.Context, q services.Queued) error {
	if o.before != nil {
		o.before()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if o.err != nil {
		return o.err
	}
	if q.Rev.Hold == 0 {
		return errors.New("published without the hold's revision")
	}
	req, err := o.clinic.Open(q.Sealed)
	if err != nil {
		return err
	}
	if req.ID != q.RequestID || req.ClinicID != q.ClinicID || req.SlotID != q.SlotID {
		return fmt.Errorf("routing IDs %s/%s/%s differ from the sealed request's", q.RequestID, q.ClinicID, q.SlotID)
	}
	o.published = append(o.published, req)
	return nil
}

type memStatuses struct {
	byKey map[string]services.Status // clinic/request → status
	err   error                      // returned by PutStatus when set
}

var _ services.Statuses = (*memStatuses)(nil)

func (s *memStatuses) PutStatus(ctx context.Context, st services.Status) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.err != nil {
		return 0, s.err
	}
	s.byKey[st.ClinicID+"/"+st.RequestID] = st
	return uint64(len(s.byKey)), nil
}

func (s *memStatuses) GetStatus(ctx context.Context, clinic, requestID string) (services.Status, error) {
	if err := ctx.Err(); err != nil {
		return services.Status{}, err
	}
	st, ok := s.byKey[clinic+"/"+requestID]
	if !ok {
		return services.Status{}, services.Errorf(services.ENotFound, "no such request")
	}
	return st, nil
}

func (s *memStatuses) DeleteStatus(ctx context.Context, clinic, requestID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	delete(s.byKey, clinic+"/"+requestID)
	return nil
}

type memDirectory struct {
	clinics  map[string]services.Clinic
	free     map[string]services.Slot // clinic/slot → slot
	sealKey  string                   // every clinic's, "" for none
	policies map[string]services.BookingPolicy
}

func (d *memDirectory) Policy(_, provider string) services.BookingPolicy { return d.policies[provider] }

func (d *memDirectory) SealKey(string) (string, bool) { return d.sealKey, d.sealKey != "" }

var _ services.Directory = (*memDirectory)(nil)

func (d *memDirectory) Clinic(id string) (services.Clinic, bool) {
	c, ok := d.clinics[id]
	return c, ok
}

func (d *memDirectory) FreeSlot(clinic, slotID string) (services.Slot, bool) {
	s, ok := d.free[clinic+"/"+slotID]
	return s, ok
}

func (d *memDirectory) NextFree(clinic string, n int) []services.Slot { return nil }

var (
	bookNow   = time.Date(2026, 3, 2, 15, 0, 0, 0, time.UTC)
	freeSlot  = services.Slot{ID: "dr-lee_20260305T1400Z", ProviderID: "dr-lee", Start: time.Date(2026, 3, 5, 14, 0, 0, 0, time.UTC), End: time.Date(2026, 3, 5, 14, 30, 0, 0, time.UTC)}
	pastSlot  = services.Slot{ID: "dr-lee_20260302T1500Z", ProviderID: "dr-lee", Start: bookNow, End: bookNow.Add(30 * time.Minute)}
	otherSlot = "dr-lee_20260305T1430Z" // published by no clinic
)

// booking is a Booker over in-memory ports: clinic "maple" with freeSlot and
// pastSlot free, and the revoked clinic "gone" with freeSlot free.
type booking struct {
	*services.Booker
	holds    *memHolds
	outbox   *memOutbox
	statuses *memStatuses
	dir      *memDirectory
}

func newBooking(t *testing.T) *booking {
	t.Helper()
	dir := &memDirectory{
		clinics: map[string]services.Clinic{
			"maple": {ID: "maple", Name: "Maple Street Physio", TimeZone: "America/Toronto"},
			"gone":  {ID: "gone", Name: "Gone Clinic", TimeZone: "UTC", Revoked: true},
		},
		free: map[string]services.Slot{
			"maple/" + freeSlot.ID: freeSlot,
			"maple/" + pastSlot.ID: pastSlot,
			"gone/" + freeSlot.ID:  freeSlot,
		},
	}
	key, _ := nkeys.CreateCurveKeys()
	opener, _ := services.NewOpener(key)
	dir.sealKey = opener.PublicKey()
	b := &booking{holds: &memHolds{held: map[string]string{}}, outbox: &memOutbox{clinic: opener}, dir: dir,
		statuses: &memStatuses{byKey: map[string]services.Status{}}}
	b.Booker = &services.Booker{Holds: b.holds, Outbox: b.outbox, Statuses: b.statuses, Directory: dir,
		HoldTTL: 10 * time.Minute, Now: func() time.Time { return bookNow }}
	return b
}

func bookingRequest() services.Request {
	r := validRequest()
	r.SlotID = freeSlot.ID
	r.Name, r.Email, r.Phone = "  Ada Lovelace ", " ada@example.org\n", " 416 555 0199 "
	return r
}

func TestBooker_Request(t *testing.T) {
	b := newBooking(t)
	ctx := t.Context()
	booked, err := b.Request(ctx, "maple", bookingRequest())
	if err != nil {
		t.Fatalf("Request() = %v", err)
	}

	clinic, token, ok := strings.Cut(booked.Token, "_")
	if !ok || clinic != "maple" || subjects.ValidRequestID(token) != nil {
		t.Fatalf("token = %q, want maple_<32 hex digits>", booked.Token)
	}
	id := services.RequestIDFor(token)
	if id == token || strings.Contains(booked.Token, id) {
		t.Errorf("token %q carries the request id %q", booked.Token, id)
	}

	if got := b.holds.held["maple/"+freeSlot.ID]; got != id {
		t.Errorf("hold on %s by %q, want %q", freeSlot.ID, got, id)
	}

	want := services.Status{RequestID: id, ClinicID: "maple", SlotID: freeSlot.ID, State: services.StateReceived, UpdatedAt: bookNow}
	if got := b.statuses.byKey["maple/"+id]; got != want {
		t.Errorf("stored status = %+v, want %+v", got, want)
	}
	if booked.Status != want {
		t.Errorf("returned status = %+v, want %+v", booked.Status, want)
	}

	if len(b.outbox.published) != 1 {
		t.Fatalf("published %d requests, want 1", len(b.outbox.published))
	}
	wantReq := bookingRequest()
	wantReq.ID, wantReq.ClinicID, wantReq.CreatedAt = id, "maple", bookNow
	wantReq.Name, wantReq.Email, wantReq.Phone = "Ada Lovelace", "ada@example.org", "416 555 0199"
	if got := b.outbox.published[0]; got != wantReq {
		t.Errorf("published %+v, want %+v", got, wantReq)
	}

	if st, err := b.Status(ctx, booked.Token); err != nil || st != want {
		t.Errorf("Status(token) = %+v, %v; want %+v", st, err, want)
	}
}

func TestBooker_Request_Errors(t *testing.T) {
	errHold := services.Errorf(services.EUnavailable, "hold: no responders")
	errPublish := services.Errorf(services.EUnavailable, "publish: no responders")
	errPut := services.Errorf(services.EUnavailable, "put status: timeout")
	tests := []struct {
		name     string
		clinic   string
		edit     func(r *services.Request)
		setup    func(b *booking)
		wantCode string
		wantErr  error  // when set, errors.Is(err, wantErr) must hold
		heldBy   string // who holds freeSlot afterwards
		// queued: the request went out alongside the status that failed.
		// With no status, the clinic's agent drops it (agent.unsettled).
		queued bool
	}{
		{name: "ErrNotFound unknown clinic", clinic: "nope", wantCode: services.ENotFound},
		{name: "ErrNotFound revoked clinic", clinic: "gone", wantCode: services.ENotFound},
		{name: "ErrInvalid", clinic: "maple", edit: func(r *services.Request) { r.Consent = false }, wantCode: services.EInvalid},
		{name: "ErrInvalid bad slot id", clinic: "maple", edit: func(r *services.Request) { r.SlotID = "maple.>" }, wantCode: services.EInvalid},
		{name: "ErrConflict slot not free", clinic: "maple", edit: func(r *services.Request) { r.SlotID = otherSlot }, wantCode: services.EConflict},
		{name: "ErrConflict slot started", clinic: "maple", edit: func(r *services.Request) { r.SlotID = pastSlot.ID }, wantCode: services.EConflict},
		{name: "ErrConflict held", clinic: "maple", setup: func(b *booking) { b.holds.held["maple/"+freeSlot.ID] = "someone" },
			wantCode: services.EConflict, heldBy: "someone"},
		{name: "ErrUnavailable hold", clinic: "maple", setup: func(b *booking) { b.holds.err = errHold },
			wantCode: services.EUnavailable, wantErr: errHold},
		{name: "ErrUnavailable status", clinic: "maple", setup: func(b *booking) { b.statuses.err = errPut },
			wantCode: services.EUnavailable, wantErr: errPut, queued: true},
		{name: "ErrUnavailable publish", clinic: "maple", setup: func(b *booking) { b.outbox.err = errPublish },
			wantCode: services.EUnavailable, wantErr: errPublish},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBooking(t)
			if tt.setup != nil {
				tt.setup(b)
			}
			req := bookingRequest()
			if tt.edit != nil {
				tt.edit(&req)
			}
			booked, err := b.Request(t.Context(), tt.clinic, req)
			if got := services.ErrorCode(err); err == nil || got != tt.wantCode {
				t.Fatalf("Request() = %+v, %v; want code %q", booked, err, tt.wantCode)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Request() = %v, want %v", err, tt.wantErr)
			}
			if booked != (services.Booked{}) {
				t.Errorf("Request() = %+v with its error, want zero", booked)
			}
			if tt.queued {
				b.outbox.published = nil
			}
			b.assertNothingLeft(t, tt.heldBy)
		})
	}
}

// TestBooker_Request_PublishCancelled is a publish that fails because the
// caller's ctx ended (client gone, deadline hit): the hold and the status must
// still be undone.
func TestBooker_Request_PublishCancelled(t *testing.T) {
	b := newBooking(t)
	ctx, cancel := context.WithCancel(t.Context())
	b.outbox.before = cancel
	_, err := b.Request(ctx, "maple", bookingRequest())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Request() = %v, want %v", err, context.Canceled)
	}
	b.assertNothingLeft(t, "")
}

// TestBooker_Request_UndoRetried: an undo that fails (NATS gone) is tried
// again until the hold is released, so the slot is not held until it starts.
func TestBooker_Request_UndoRetried(t *testing.T) {
	b := newBooking(t)
	b.Booker.UndoRetry = 10 * time.Millisecond
	b.holds.failRelease = 3
	b.outbox.err = services.Errorf(services.EUnavailable, "the booking service is busy")
	if _, err := b.Request(t.Context(), "maple", bookingRequest()); services.ErrorCode(err) != services.EUnavailable {
		t.Fatalf("Request() = %v, want unavailable", err)
	}
	if b.holds.heldBy("maple", freeSlot.ID) == "" {
		t.Fatal("the failing release released the hold")
	}
	poll.For(t, 5*time.Second, func() error {
		if b.holds.heldBy("maple", freeSlot.ID) != "" {
			return errors.New("hold still there after the failed undo")
		}
		return nil
	})
}

// assertNothingLeft checks that no request was published, no status is kept
// and freeSlot is held by heldBy ("" for nobody).
func (b *booking) assertNothingLeft(t *testing.T, heldBy string) {
	t.Helper()
	if len(b.outbox.published) != 0 {
		t.Errorf("published %+v, want nothing", b.outbox.published)
	}
	if len(b.statuses.byKey) != 0 {
		t.Errorf("statuses = %+v, want none", b.statuses.byKey)
	}
	if got := b.holds.held["maple/"+freeSlot.ID]; got != heldBy {
		t.Errorf("%s held by %q, want %q", freeSlot.ID, got, heldBy)
	}
	if len(b.holds.held) > 1 || (heldBy == "" && len(b.holds.held) != 0) {
		t.Errorf("holds = %v, want at most %s held by %q", b.holds.held, freeSlot.ID, heldBy)
	}
}

func TestBooker_Status_ErrNotFound(t *testing.T) {
	b := newBooking(t)
	tok := services.NewToken()
	for _, token := range []string{
		"",
		"maple_" + tok,                        // well formed, never issued
		"ma.ple_" + tok,                       // malformed clinic
		"maple_" + tok[:31],                   // malformed token
		"maple_" + services.RequestIDFor(tok), // a request ID is not a token
	} {
		if st, err := b.Status(t.Context(), token); services.ErrorCode(err) != services.ENotFound {
			t.Errorf("Status(%q) = %+v, %v; want code %q", token, st, err, services.ENotFound)
		}
	}
}

// TestBooker_Status_Expired: a request still "received" after
// RequestLifetime has left the queue undelivered and reads "expired"; one the
// clinic has is not touched.
func TestBooker_Status_Expired(t *testing.T) {
	for _, tt := range []struct {
		state services.State
		age   time.Duration
		want  services.State
	}{
		{services.StateReceived, services.RequestLifetime - time.Hour, services.StateReceived},
		{services.StateReceived, services.RequestLifetime + time.Hour, services.StateExpired},
		{services.StateDelivered, services.RequestLifetime + time.Hour, services.StateDelivered},
		{services.StateBooked, services.RequestLifetime + time.Hour, services.StateBooked},
	} {
		b := newBooking(t)
		tok := services.NewToken()
		id := services.RequestIDFor(tok)
		b.statuses.byKey["maple/"+id] = services.Status{RequestID: id, ClinicID: "maple", State: tt.state,
			UpdatedAt: bookNow.Add(-tt.age)}
		st, err := b.Status(t.Context(), services.StatusToken("maple", tok))
		if err != nil || st.State != tt.want {
			t.Errorf("%s, %s old: %q %v; want %q", tt.state, tt.age, st.State, err, tt.want)
		}
	}
}

// TestBooker_Request_NoSealKey: a clinic whose agent has not published its
// key yet takes no request, and nothing is held.
func TestBooker_Request_NoSealKey(t *testing.T) {
	b := newBooking(t)
	b.dir.sealKey = ""
	if _, err := b.Request(t.Context(), "maple", bookingRequest()); services.ErrorCode(err) != services.EUnavailable {
		t.Fatalf("Request() = %v, want unavailable", err)
	}
	b.assertNothingLeft(t, "")
}

// TestBooker_Stop: Stop ends the undo retries still waiting at once (a relay
// stopping; they ran for minutes after it) and counts them.
func TestBooker_Stop(t *testing.T) {
	b := newBooking(t)
	b.Booker.UndoRetry = time.Hour
	b.holds.failRelease = 1
	b.outbox.err = services.Errorf(services.EUnavailable, "the booking service is busy")
	if _, err := b.Request(t.Context(), "maple", bookingRequest()); services.ErrorCode(err) != services.EUnavailable {
		t.Fatalf("Request() = %v, want unavailable", err)
	}
	t0 := time.Now()
	if n := b.Booker.Stop(); n != 1 {
		t.Errorf("Stop() = %d, want the one undo waiting", n)
	}
	if took := time.Since(t0); took > time.Second {
		t.Errorf("Stop took %s", took)
	}
	if b.Booker.Stop() != 1 {
		t.Error("a second Stop changed the count")
	}
}

// hungOutbox never answers: a NATS that takes the publish and says nothing.
type hungOutbox struct{}

func (hungOutbox) PublishRequest(ctx context.Context, _ services.Queued) error {
	<-ctx.Done()
	return &services.Error{Code: services.EUnavailable, Message: "busy", Err: ctx.Err()}
}

// TestBooker_Request_Deadline: a booking is answered by its deadline, however
// long NATS takes, and what it wrote is undone.
func TestBooker_Request_Deadline(t *testing.T) {
	b := newBooking(t)
	b.Outbox, b.Deadline = hungOutbox{}, 200*time.Millisecond
	t0 := time.Now()
	_, err := b.Request(t.Context(), "maple", bookingRequest())
	if took := time.Since(t0); took > b.Deadline+100*time.Millisecond {
		t.Errorf("answered after %s, deadline %s", took, b.Deadline)
	}
	if services.ErrorCode(err) != services.EUnavailable {
		t.Errorf("Request() = %v, want EUnavailable", err)
	}
	b.assertNothingLeft(t, "")
}

// undoStatuses is memStatuses with revisions (sw) and a delete at a revision.
type undoStatuses struct {
	*memStatuses
	sw *memSwapper
}

func (u undoStatuses) DeleteStatusAt(ctx context.Context, clinic, id string, rev uint64) error {
	if u.sw.rev[clinic+"/"+id] != rev {
		return services.Errorf(services.EConflict, "changed")
	}
	return u.memStatuses.DeleteStatus(ctx, clinic, id)
}

// agentFirst is a memSwapper whose status the clinic's agent moves on to
// delivered just before it is read: the agent took the request before the
// failed booking's undo came.
type agentFirst struct{ *memSwapper }

func (a agentFirst) GetStatusRev(ctx context.Context, clinic, id string) (services.Status, uint64, error) {
	if st, ok := a.s.byKey[clinic+"/"+id]; ok {
		st.State = services.StateDelivered
		a.s.byKey[clinic+"/"+id] = st
		a.rev[clinic+"/"+id]++
	}
	return a.memSwapper.GetStatusRev(ctx, clinic, id)
}

// TestBooker_Request_UndoLeavesTheClinicsAnswer: a booking that fails after
// the clinic's agent took its request (the status moved on to delivered)
// does not erase that status in its undo; one still "received" is deleted.
func TestBooker_Request_UndoLeavesTheClinicsAnswer(t *testing.T) {
	for _, tt := range []struct {
		name  string
		agent bool
		kept  bool
	}{{"received", false, false}, {"delivered", true, true}} {
		t.Run(tt.name, func(t *testing.T) {
			b := newBooking(t)
			sw := &memSwapper{s: b.statuses, rev: map[string]uint64{}}
			b.Swapper, b.Booker.Statuses = sw, undoStatuses{b.statuses, sw}
			if tt.agent {
				b.Swapper = agentFirst{sw}
			}
			b.outbox.err = services.Errorf(services.EUnavailable, "publish: timeout")
			if _, err := b.Request(t.Context(), "maple", bookingRequest()); services.ErrorCode(err) != services.EUnavailable {
				t.Fatalf("Request() = %v, want EUnavailable", err)
			}
			if kept := len(b.statuses.byKey) == 1; kept != tt.kept {
				t.Errorf("status kept = %v, want %v (%v)", kept, tt.kept, b.statuses.byKey)
			}
		})
	}
}
