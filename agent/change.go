package agent

import (
	"context"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// changeWait is how long a change to a request the connector has not
// stored yet waits before it comes again, doubling each time up to
// maxChangeWait. The request is normally just ahead of it in the queue, but
// may be held up (a store failing, a seal key missing); the change is never
// dropped for waiting: it leaves the queue only with the request's MaxAge.
const (
	changeWait    = 2 * time.Second
	maxChangeWait = 5 * time.Minute
)

func openChange(a *Agent, env envelope) (any, error) {
	ch, err := a.opener.OpenChange(env.sealed)
	if err == nil {
		err = ch.Validate()
	}
	if err == nil && (ch.RequestID != env.requestID || ch.ClinicID != a.clinic || ch.SlotID != env.slotID) {
		err = services.Errorf(services.EInvalid, "change: routing IDs differ from the sealed ones")
	}
	return ch, err
}

// refusedChange stops holding back the clinic's outcomes for a change it
// will never apply, and frees the new time the change held.
func refusedChange(ctx context.Context, a *Agent, env envelope) {
	if err := a.forgetChange(ctx, env.requestID); err != nil {
		env.log.Warn("status: forget the unreadable change", "err", err.Error())
	}
	if subjects.ValidSlotID(env.slotID) == nil {
		a.releaseLater(heldSlot{slot: env.slotID, requestID: env.requestID})
	}
}

// applyChange applies a patient's cancellation or new time, acked once the
// connector has it. The outcome reaches STATUS through the connector's
// pending outcomes, like a front-desk decision.
func applyChange(ctx context.Context, a *Agent, env envelope, body any) verdict {
	ch := body.(services.Change)
	switch err := a.conn.Apply(ctx, ch); {
	case err == nil:
	case services.ErrorCode(err) == services.ENotFound && a.answered(ctx, ch.RequestID):
		// The request will never be stored: it was declined (its slot was
		// taken) or expired. The change has nothing left to change.
		env.log.Info("change for a closed request dropped", "action", ch.Action)
	case services.ErrorCode(err) == services.ENotFound:
		wait := changeWait
		if md, merr := env.m.Metadata(); merr == nil {
			for n := uint64(1); n < md.NumDelivered && wait < maxChangeWait; n++ {
				wait *= 2
			}
		}
		if wait >= time.Minute {
			env.log.Warn("change waits for its request, which is not stored yet", "action", ch.Action,
				"retry_in", min(wait, maxChangeWait).String())
		}
		return again(min(wait, maxChangeWait))
	default:
		if ctx.Err() == nil {
			env.log.Error("apply change", "action", ch.Action, "err", err.Error())
		}
		return again(2 * time.Second)
	}
	// Not acked (the ack lost): it comes again, and Apply is idempotent.
	return ack(func(ctx context.Context) {
		env.log.Info("change applied", "action", ch.Action)
		a.record(ctx, services.AuditChangeApplied, ch.RequestID, ch.Action)
		if ch.SlotID != "" {
			a.releaseLater(heldSlot{slot: ch.SlotID, requestID: ch.RequestID, rev: env.holdRev()})
		}
	})
}

// forgetChange clears the pending change STATUS names for request id, so the
// clinic's outcomes for it are published again.
func (a *Agent) forgetChange(ctx context.Context, id string) error {
	_, _, err := services.Advance(ctx, a.status, a.clinic, id, services.ForgetChange(), nil)
	return statusGone(err)
}

// answered reports whether STATUS says the clinic's side closed request id
// without storing it: declined (its slot was taken, it could not be read)
// or expired. A patient's cancellation does not count: the request it
// cancels may still be on its way, and must be cancelled when it comes.
func (a *Agent) answered(ctx context.Context, id string) bool {
	st, err := a.status.GetStatus(ctx, a.clinic, id)
	st = st.At(a.cfg.Now())
	return err == nil && (st.State == services.StateDeclined || st.State == services.StateExpired)
}
