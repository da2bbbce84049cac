package agent

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// ackTimeout bounds the wait for the server to confirm an ack.
const ackTimeout = 2 * time.Second

// handle stores one request and acks it only once it is stored. A request
// that cannot be stored is not acked: it is redelivered after a delay.
func (a *Agent) handle(ctx context.Context, m jetstream.Msg) {
	if subjects.IsChange(m.Subject()) {
		a.handleChange(ctx, m)
		return
	}
	id := m.Headers().Get(subjects.HeaderRequestID)
	log := a.log.With("request_id", id)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	h := m.Headers()
	sealed := services.Sealed{To: h.Get(subjects.HeaderSealedTo), From: h.Get(subjects.HeaderSealedFrom), Box: m.Data()}
	if sealed.To != "" && !a.opener.Has(sealed.To) {
		// Sealed to a key this agent does not hold (a reinstall with a new
		// seal.nk, or another agent's): keep it for the agent that does.
		log.Error("request sealed to a key this agent does not hold; restore seal.nk from the old data dir",
			"sealed_to", sealed.To)
		_ = m.NakWithDelay(time.Minute)
		return
	}
	req, err := a.opener.Open(sealed)
	if err != nil || req.ID != id || req.ClinicID != a.clinic || subjects.ValidRequestID(req.ID) != nil {
		// Not sealed to this clinic, tampered with, or not readable:
		// retrying cannot help. Terminate it and tell the patient (no body
		// in the log).
		a.refuse(cctx, m, log, id, h.Get(subjects.HeaderSlotID), "unreadable request")
		return
	}
	// The relay writes a request's status alongside it, and deletes it
	// when the booking fails: a request with no status is not the clinic's
	// (yet, or at all).
	st, rev, err := a.status.GetStatusRev(cctx, a.clinic, req.ID)
	for wait := 5 * time.Millisecond; services.ErrorCode(err) == services.ENotFound && wait <= 40*time.Millisecond; wait *= 2 {
		// Written alongside: most often it lands a moment after.
		time.Sleep(wait)
		st, rev, err = a.status.GetStatusRev(cctx, a.clinic, req.ID)
	}
	if services.ErrorCode(err) == services.ENotFound {
		a.unsettled(m, log)
		return
	}
	if err != nil {
		log.Warn("read the request's status", "err", err.Error())
		_ = m.NakWithDelay(2 * time.Second)
		return
	}
	a.record(cctx, services.AuditRequestOpened, req.ID, a.conn.Name())
	if err := a.conn.Store(cctx, req); err != nil {
		switch services.ErrorCode(err) {
		case services.EInvalid:
			a.refuse(cctx, m, log, req.ID, req.SlotID, err.Error())
			return
		case services.EConflict:
			// The clinic's system has given the slot to someone else: the
			// request is answered, declined with the connector's reason.
			a.declineTaken(cctx, m, log, req, err)
			return
		}
		if ctx.Err() != nil {
			return // stopping: the request comes again
		}
		log.Error("store request", "err", err.Error())
		_ = m.NakWithDelay(2 * time.Second)
		return
	}
	holdRev, _ := strconv.ParseUint(m.Headers().Get(subjects.HeaderHoldRevision), 10, 64)
	if err := a.markDelivered(cctx, req, services.Known{Status: st, Rev: rev}); err != nil {
		log.Warn("status delivered", "err", err.Error())
	}
	// A short wait for the ack: an ack the server drops (the consumer was
	// made again after a relay restart and has not re-delivered this one
	// yet) gets no answer, and the request comes again anyway.
	actx, acancel := context.WithTimeout(ctx, ackTimeout)
	defer acancel()
	if err := m.DoubleAck(actx); err != nil {
		// Stored but not acked: it comes again and Store is idempotent.
		log.Warn("ack", "err", err.Error())
		return
	}
	log.Info("request stored")
	a.record(cctx, services.AuditRequestDelivered, req.ID, a.conn.Name())
	a.releaseLater(heldSlot{slot: req.SlotID, requestID: req.ID, rev: holdRev})
	select {
	case a.stored <- struct{}{}:
	default:
	}
}

// declineTaken declines a request whose slot the clinic's system no longer
// has free, then acks it: the decline is in STATUS before the request leaves
// the queue.
func (a *Agent) declineTaken(ctx context.Context, m jetstream.Msg, log *slog.Logger, req services.Request, why error) {
	reason := ReasonSlotTaken
	var e *services.Error
	if errors.As(why, &e) && e.Message != "" {
		reason = e.Message
	}
	if err := a.declineUnread(ctx, req.ID, req.SlotID, reason); err != nil {
		log.Warn("status declined", "err", err.Error())
		_ = m.NakWithDelay(2 * time.Second) // try again: the patient must be told
		return
	}
	log.Info("request declined: slot taken in the clinic's system")
	a.record(ctx, services.AuditOutcomeSet, req.ID, string(services.StateDeclined))
	actx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	_ = m.DoubleAck(actx)
	a.releaseLater(heldSlot{slot: req.SlotID, requestID: req.ID})
}

// ReasonSlotTaken is the decline reason of a request whose slot the
// clinic's system gave to someone else.
const ReasonSlotTaken = services.ReasonSlotTaken

// refuse terminates a request the clinic cannot take and declines it in
// STATUS, so the patient is told rather than left waiting.
func (a *Agent) refuse(ctx context.Context, m jetstream.Msg, log *slog.Logger, id, slot, why string) {
	log.Error("request refused and terminated", "why", why)
	if subjects.ValidRequestID(id) == nil {
		// Only a status still "received" (or none) is declined: a forged or
		// replayed copy under a real request's ID must not undo its outcome.
		if err := a.declineUnread(ctx, id, slot, "The clinic could not read this request. Please request again."); err != nil {
			log.Warn("status declined", "err", err.Error())
		}
		if subjects.ValidSlotID(slot) == nil {
			a.releaseLater(heldSlot{slot: slot, requestID: id})
		}
	}
	_ = m.Term()
}

// markDelivered moves STATUS from received to delivered (services.Deliver),
// never backwards, starting from the status read before the request was
// stored (known): Advance reads it again only if it changed since.
func (a *Agent) markDelivered(ctx context.Context, req services.Request, known services.Known) error {
	_, _, err := services.Advance(ctx, a.status, a.clinic, req.ID, services.Deliver(a.cfg.Now()), &known)
	return statusGone(err)
}

// unsettled takes again, with a growing delay, a request whose status is
// not there: the relay writes the two together, and the status may land a
// moment after. A request still without one after SettleWait is one whose
// booking failed (its patient was told so, and the relay deleted its
// status): it is terminated, never stored.
func (a *Agent) unsettled(m jetstream.Msg, log *slog.Logger) {
	var n uint64 = 1
	if md, err := m.Metadata(); err == nil {
		n = md.NumDelivered
	}
	var waited time.Duration
	wait := settleFirstWait
	for range n - 1 {
		waited += wait
		wait = min(2*wait, settleMaxWait)
	}
	if waited >= a.cfg.SettleWait {
		log.Warn("request dropped: its booking failed at the relay (it has no status)")
		_ = m.Term()
		return
	}
	_ = m.NakWithDelay(wait)
}

// The waits of a request whose status is not there yet.
const (
	settleFirstWait = 100 * time.Millisecond
	settleMaxWait   = 5 * time.Second
)

// declineUnread sets the status of request id to declined with reason,
// unless the status has moved past "received" (services.DeclineUnread).
func (a *Agent) declineUnread(ctx context.Context, id, slot, reason string) error {
	_, _, err := services.Advance(ctx, a.status, a.clinic, id, services.DeclineUnread(slot, reason, a.cfg.Now()), nil)
	return statusGone(err)
}

// statusGone drops the error of a request that has no status. The web makes
// every status when it takes the request, and an agent only updates them
// (the relay refuses new keys, which would let a clinic grow STATUS without
// end), so there is nothing to write: the status expired, or was lost with a
// restored relay, and the patient's page is gone with it.
func statusGone(err error) error {
	if services.ErrorCode(err) == services.ENotFound {
		return nil
	}
	return err
}
