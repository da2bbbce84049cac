package agent

import (
	"context"
	"errors"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// ackTimeout bounds the wait for the server to confirm an ack.
const ackTimeout = 2 * time.Second

func openRequest(a *Agent, env envelope) (any, error) {
	req, err := a.opener.Open(env.sealed)
	if err == nil && (req.ID != env.requestID || req.ClinicID != a.clinic || subjects.ValidRequestID(req.ID) != nil) {
		err = services.Errorf(services.EInvalid, "request: routing IDs differ from the sealed ones")
	}
	return req, err
}

// refusedRequest tells the patient the clinic could not read their request,
// if its status is still "received", and frees its slot.
func refusedRequest(ctx context.Context, a *Agent, env envelope) {
	a.declineRefused(ctx, env, "The clinic could not read this request. Please request again.")
}

// applyRequest stores a request once its status is there, and has it acked
// only once stored; one that cannot be stored is taken again after a delay.
func applyRequest(ctx context.Context, a *Agent, env envelope, body any) verdict {
	req := body.(services.Request)
	// The relay writes a request's status alongside it, and deletes it
	// when the booking fails: a request with no status is not the clinic's
	// (yet, or at all).
	st, rev, err := a.status.GetStatusRev(ctx, a.clinic, req.ID)
	for wait := 5 * time.Millisecond; services.ErrorCode(err) == services.ENotFound && wait <= 40*time.Millisecond; wait *= 2 {
		// Written alongside: most often it lands a moment after.
		time.Sleep(wait)
		st, rev, err = a.status.GetStatusRev(ctx, a.clinic, req.ID)
	}
	if services.ErrorCode(err) == services.ENotFound {
		return a.unsettled(env)
	}
	if err != nil {
		env.log.Warn("read the request's status", "err", err.Error())
		return again(2 * time.Second)
	}
	a.record(ctx, services.AuditRequestOpened, req.ID, a.conn.Name())
	if err := a.conn.Store(ctx, req); err != nil {
		switch services.ErrorCode(err) {
		case services.EInvalid:
			env.log.Error("request refused and terminated", "why", err.Error())
			a.declineRefused(ctx, env, err.Error())
			return verdict{term: true}
		case services.EConflict:
			// The clinic's system has given the slot to someone else: the
			// request is answered, declined with the connector's reason.
			return a.declineTaken(ctx, env, req, err)
		}
		if ctx.Err() != nil {
			return verdict{} // stopping: the request comes again
		}
		env.log.Error("store request", "err", err.Error())
		return again(2 * time.Second)
	}
	if err := a.markDelivered(ctx, req, services.Known{Status: st, Rev: rev}); err != nil {
		env.log.Warn("status delivered", "err", err.Error())
	}
	// Stored but not acked (the ack lost): it comes again and Store is
	// idempotent.
	return ack(func(ctx context.Context) {
		env.log.Info("request stored")
		a.record(ctx, services.AuditRequestDelivered, req.ID, a.conn.Name())
		a.releaseLater(heldSlot{slot: req.SlotID, requestID: req.ID, rev: env.holdRev()})
		select {
		case a.stored <- struct{}{}:
		default:
		}
	})
}

// declineTaken declines a request whose slot the clinic's system no longer
// has free, then acks it: the decline is in STATUS before the request leaves
// the queue.
func (a *Agent) declineTaken(ctx context.Context, env envelope, req services.Request, why error) verdict {
	reason := ReasonSlotTaken
	var e *services.Error
	if errors.As(why, &e) && e.Message != "" {
		reason = e.Message
	}
	if err := a.declineUnread(ctx, req.ID, req.SlotID, reason); err != nil {
		env.log.Warn("status declined", "err", err.Error())
		return again(2 * time.Second) // try again: the patient must be told
	}
	env.log.Info("request declined: slot taken in the clinic's system")
	a.record(ctx, services.AuditOutcomeSet, req.ID, string(services.StateDeclined))
	return ack(func(context.Context) { a.releaseLater(heldSlot{slot: req.SlotID, requestID: req.ID}) })
}

// ReasonSlotTaken is the decline reason of a request whose slot the
// clinic's system gave to someone else.
const ReasonSlotTaken = services.ReasonSlotTaken

// declineRefused declines, with why, a request the clinic cannot take,
// so the patient is told rather than left waiting, and frees its slot.
// Only a status still "received" is declined (services.DeclineUnread).
func (a *Agent) declineRefused(ctx context.Context, env envelope, why string) {
	if err := a.declineUnread(ctx, env.requestID, env.slotID, why); err != nil {
		env.log.Warn("status declined", "err", err.Error())
	}
	if subjects.ValidSlotID(env.slotID) == nil {
		a.releaseLater(heldSlot{slot: env.slotID, requestID: env.requestID})
	}
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
func (a *Agent) unsettled(env envelope) verdict {
	var n uint64 = 1
	if md, err := env.m.Metadata(); err == nil {
		n = md.NumDelivered
	}
	var waited time.Duration
	wait := settleFirstWait
	for range n - 1 {
		waited += wait
		wait = min(2*wait, settleMaxWait)
	}
	if waited >= a.cfg.SettleWait {
		env.log.Warn("request dropped: its booking failed at the relay (it has no status)")
		return verdict{term: true}
	}
	return again(wait)
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
