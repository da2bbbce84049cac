package services

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"time"
)

// Holds keeps exclusive, expiring holds on slots.
type Holds interface {
	// Hold takes the slot for requestID and returns the hold's revision;
	// EConflict when someone holds it.
	Hold(ctx context.Context, clinic, slot, requestID string, ttl time.Duration) (uint64, error)
	// Release drops the hold on slot if requestID still holds it.
	Release(ctx context.Context, clinic, slot, requestID string) error
}

// HoldExtender is a Holds that can make a hold last longer, over its
// revision only: a hold released or taken since stays as it is.
type HoldExtender interface {
	ExtendHold(ctx context.Context, clinic, slot, requestID string, rev uint64, ttl time.Duration) error
}

// Outbox carries a request to the clinic's queue, at most once per request ID.
type Outbox interface {
	// PublishRequest queues a sealed request.
	PublishRequest(ctx context.Context, q Queued) error
}

// Revisions are the versions the relay's writes for a request got. They go
// with the request so that the clinic's agent releases its hold without
// reading it first, and leaves it alone if it has changed since.
type Revisions struct {
	Hold uint64
}

// BookingDeadline bounds a whole booking, from the form's arrival to the
// answer: past it the patient is told to try again (503), and what the
// booking had written is undone.
const BookingDeadline = 3 * time.Second

// Statuses keeps request outcomes.
type Statuses interface {
	// PutStatus writes st and returns its revision.
	PutStatus(ctx context.Context, st Status) (uint64, error)
	// GetStatus returns ENotFound for an unknown request.
	GetStatus(ctx context.Context, clinic, requestID string) (Status, error)
	DeleteStatus(ctx context.Context, clinic, requestID string) error
}

// Directory answers from the relay's in-memory view of clinics and slots.
type Directory interface {
	Clinic(id string) (Clinic, bool)
	// FreeSlot returns the slot if the clinic publishes it free and nobody holds it.
	FreeSlot(clinic, slotID string) (Slot, bool)
	// NextFree lists up to n free slots from now.
	NextFree(clinic string, n int) []Slot
	// SealKey is the clinic's public curve key, which its agent publishes.
	SealKey(clinic string) (string, bool)
	// Policy is the booking policy of a clinic's provider, as its agent
	// publishes it (the zero policy for one it does not know).
	Policy(clinic, provider string) BookingPolicy
}

// Booker turns a patient's form into a held slot, a queued request and a status.
type Booker struct {
	Holds     Holds
	Outbox    Outbox
	Statuses  Statuses
	Directory Directory
	// Contacts, when set, keeps the patient's address for email notices;
	// ContactFailed hears of one it could not keep (the request goes on).
	Contacts      ContactKeeper
	ContactFailed func(clinic, requestID string, err error)
	// Pending, when set, caps the requests one email or phone has waiting
	// at a clinic (services/limits.go).
	Pending Pending
	// HoldExtendFailed hears of a hold that could not be made to last until
	// its slot (it lapses after HoldTTL).
	HoldExtendFailed func(clinic, requestID string, err error)
	// Swapper and Changes serve a patient's cancellations and reschedules.
	Swapper StatusSwapper
	Changes ChangeOutbox
	// HoldTTL is the shortest a hold lasts. A hold lasts until the clinic's
	// agent has the request (it then releases it) or until the slot starts,
	// so a slot stays taken while the clinic is offline.
	HoldTTL time.Duration
	Now     func() time.Time
	// UndoRetry is the first wait before an undo that failed is tried
	// again (default 1s; it doubles each time).
	UndoRetry time.Duration
	// Deadline bounds each booking (default BookingDeadline).
	Deadline time.Duration

	sealer    Sealer
	mu        sync.Mutex
	stop      chan struct{} // closed by Stop; made on first use
	stopped   bool
	retries   sync.WaitGroup // undoLater goroutines
	abandoned int
}

// stopping is closed once Stop is called.
func (b *Booker) stopping() chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stop == nil {
		b.stop = make(chan struct{})
	}
	return b.stop
}

// Stop ends the undo retries still waiting, for a relay that stops: it
// returns at once and says how many it ended. Their holds lapse after
// HoldTTL (a hold is extended only once its request is queued).
func (b *Booker) Stop() int {
	stop := b.stopping()
	b.mu.Lock()
	if !b.stopped {
		b.stopped = true
		close(stop)
	}
	b.mu.Unlock()
	b.retries.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.abandoned
}

// Booked is what a patient gets back: the secret status token and the status.
type Booked struct {
	Token  string
	Status Status
}

// Request validates req, holds its slot and queues it for the clinic.
func (b *Booker) Request(ctx context.Context, clinicID string, req Request) (Booked, error) {
	c, ok := b.Directory.Clinic(clinicID)
	if !ok || c.Revoked {
		return Booked{}, Keyed(ENotFound, "error.no_clinic", "no clinic %q", clinicID)
	}
	now := b.Now().UTC()
	req = req.Trimmed()
	if err := req.Validate(now); err != nil {
		return Booked{}, err
	}
	slot, ok := b.Directory.FreeSlot(clinicID, req.SlotID)
	if !ok || !slot.Start.After(now) {
		return Booked{}, Keyed(EConflict, "form.gone", "that time is no longer free")
	}
	if err := b.Directory.Policy(clinicID, slot.ProviderID).Bookable(now, slot.Start); err != nil {
		return Booked{}, err
	}
	to, ok := b.Directory.SealKey(clinicID)
	if !ok {
		return Booked{}, Keyed(EUnavailable, "error.not_ready", "the clinic is not ready to take requests yet")
	}
	token := NewToken()
	req.ID, req.ClinicID, req.CreatedAt = RequestIDFor(token), clinicID, now
	sealed, err := b.sealer.Seal(req, to)
	if err != nil {
		return Booked{}, err
	}
	// A hold lasts until the slot starts, so that it stays taken while the
	// clinic is offline; with a HoldExtender it lasts only HoldTTL until the
	// request is queued, so a hold the relay never finished (it stopped in
	// between) lapses on its own.
	until := max(b.HoldTTL, slot.Start.Sub(now))
	ext, extend := b.Holds.(HoldExtender)
	ttl := until
	if extend {
		ttl = b.HoldTTL
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(b.Deadline, BookingDeadline))
	defer cancel()
	// Two round trips. The first takes the slot (the exclusive hold),
	// counts the request against the patient's cap and keeps their contact,
	// together.
	var rev Revisions
	keys := PendingKeys(req, c.Country())
	errs := together(
		func() (err error) { rev.Hold, err = b.Holds.Hold(ctx, clinicID, req.SlotID, req.ID, ttl); return err },
		func() error { return b.reserve(ctx, req, keys, slot.Start) },
		func() error { b.keepContact(ctx, req, token, slot); return nil }) // before the status, which the notifier follows
	if errs[0] != nil || errs[1] != nil {
		if errs[1] == nil {
			b.unreserve(ctx, req, keys)
		}
		// A patient at their cap hears so before "no longer free".
		// A hold that failed other than by conflict may have been stored
		// after all (its answer lost): release it too (Release checks the
		// owner).
		held := ErrorCode(errs[0]) != EConflict
		return Booked{}, errors.Join(cmp.Or(errs[1], errs[0]), b.undo(ctx, req, false, held))
	}
	// The second writes the first status and queues the sealed request,
	// together. The clinic's agent takes a request only once its status is
	// there (it waits for a status still being written), so a booking that
	// fails here and deletes its status in time does not reach the clinic;
	// one whose undo comes after the agent took the request does (see
	// docs/faults.md), and the undo then leaves the clinic's status alone.
	st := Status{RequestID: req.ID, ClinicID: clinicID, SlotID: req.SlotID, State: StateReceived, UpdatedAt: now}
	q := Queued{RequestID: req.ID, ClinicID: clinicID, SlotID: req.SlotID, Sealed: sealed, Rev: rev}
	errs = together(
		// The status goes out first, most often: the agent looks for it
		// as soon as it has the request.
		func() error { _, err := b.Statuses.PutStatus(ctx, st); return err },
		func() error { return b.Outbox.PublishRequest(ctx, q) })
	if err := errors.Join(errs[1], errs[0]); err != nil {
		return Booked{}, errors.Join(err, b.undo(ctx, req, true, true))
	}
	if extend && until > ttl {
		b.later(func() { b.extendHold(ctx, ext, clinicID, req.SlotID, req.ID, rev.Hold, until) })
	}
	return Booked{Token: StatusToken(clinicID, token), Status: st}, nil
}

// together runs fns at once and returns their errors, in order: the writes
// of one round trip. The first runs on the caller's goroutine, so it is most
// often the first sent.
func together(fns ...func() error) []error {
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns[1:] {
		wg.Go(func() { errs[i+1] = fn() })
	}
	errs[0] = fns[0]()
	wg.Wait()
	return errs
}

// later runs fn after the booking has been answered; Stop waits for it.
// A Booker stopped already runs nothing more: it reports false.
func (b *Booker) later(fn func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return false
	}
	b.retries.Add(1)
	go func() {
		defer b.retries.Done()
		fn()
	}()
	return true
}

// extendHold makes a queued request's hold last until its slot starts. It
// does not depend on the patient's connection, and tries twice: a hold left
// short lapses after HoldTTL, and the slot would be offered while the clinic
// may still be offline. A conflict means the clinic's agent has the request
// already and released the hold.
func (b *Booker) extendHold(ctx context.Context, ext HoldExtender, clinic, slot, id string, rev uint64, until time.Duration) {
	var err error
	for range 2 {
		xctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		err = ext.ExtendHold(xctx, clinic, slot, id, rev, until)
		cancel()
		if err == nil || ErrorCode(err) == EConflict {
			return
		}
		select {
		case <-b.stopping():
			return // the hold lapses after HoldTTL
		default:
		}
	}
	if b.HoldExtendFailed != nil {
		b.HoldExtendFailed(clinic, id, err)
	}
}

// undo deletes the status (if written), releases the hold (if taken) and
// forgets the contact of a booking that failed. It runs on a context of its
// own, the caller's being often the one that timed out, and waits for it at
// most until the booking's deadline (and a moment): past that, it goes on
// in the background, so the patient's answer is not late.
func (b *Booker) undo(ctx context.Context, req Request, status, hold bool) error {
	wait := undoGrace
	if dl, ok := ctx.Deadline(); ok {
		wait = max(time.Until(dl), 0) + undoGrace
	}
	err := b.tryUndo(ctx, req, status, hold, wait)
	if err != nil && !b.later(func() { b.undoLater(context.WithoutCancel(ctx), req, status, hold) }) {
		b.mu.Lock()
		b.abandoned++ // stopped: the hold lapses after HoldTTL
		b.mu.Unlock()
	}
	return err
}

// undoGrace is how long past the booking's deadline its undo is waited for.
const undoGrace = 250 * time.Millisecond

// undoLater keeps trying an undo that failed (most often NATS was gone),
// backing off for about eight minutes: otherwise the slot would stay held
// until it starts. Stop ends it.
func (b *Booker) undoLater(ctx context.Context, req Request, status, hold bool) {
	wait := b.UndoRetry
	if wait <= 0 {
		wait = time.Second
	}
	stop := b.stopping()
	for range 10 {
		t := time.NewTimer(wait)
		select {
		case <-stop:
			t.Stop()
			b.mu.Lock()
			b.abandoned++
			b.mu.Unlock()
			return
		case <-t.C:
		}
		if b.tryUndo(ctx, req, status, hold, 5*time.Second) == nil {
			return
		}
		wait *= 2
	}
}

func (b *Booker) tryUndo(ctx context.Context, req Request, status, hold bool, wait time.Duration) error {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
	defer cancel()
	var errs []error
	if status {
		// First: without its status the clinic's agent does not take the
		// request, if its publish was stored after all.
		errs = append(errs, b.undoStatus(uctx, req))
	}
	if hold {
		errs = append(errs, b.Holds.Release(uctx, req.ClinicID, req.SlotID, req.ID))
	}
	if b.Contacts != nil {
		errs = append(errs, b.Contacts.Forget(uctx, req.ClinicID, req.ID))
	}
	return errors.Join(errs...)
}

// StatusUndoer deletes a status only while it is still at revision rev.
type StatusUndoer interface {
	DeleteStatusAt(ctx context.Context, clinic, requestID string, rev uint64) error
}

// undoStatus deletes the status a failed booking wrote, only while it is
// still that booking's "received": one the clinic's agent has moved on (it
// took the request before the undo came) is the clinic's answer, and stays.
func (b *Booker) undoStatus(ctx context.Context, req Request) error {
	undoer, ok := b.Statuses.(StatusUndoer)
	if b.Swapper == nil || !ok {
		return b.Statuses.DeleteStatus(ctx, req.ClinicID, req.ID)
	}
	cur, rev, err := b.Swapper.GetStatusRev(ctx, req.ClinicID, req.ID)
	switch {
	case ErrorCode(err) == ENotFound:
		return nil
	case err != nil:
		return err
	case cur.State != StateReceived || cur.Change != "":
		return nil
	}
	return undoer.DeleteStatusAt(ctx, req.ClinicID, req.ID, rev)
}

// Status looks a request up by the patient's status token.
func (b *Booker) Status(ctx context.Context, token string) (Status, error) {
	clinic, id, err := ParseStatusToken(token)
	if err != nil {
		return Status{}, err
	}
	st, err := b.Statuses.GetStatus(ctx, clinic, id)
	if err != nil {
		return st, err
	}
	return st.At(b.Now()), nil
}
