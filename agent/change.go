package agent

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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

// handleChange applies a patient's cancellation or new time, and acks it
// once the connector has it. The outcome reaches STATUS through the
// connector's pending outcomes, like a front-desk decision.
func (a *Agent) handleChange(ctx context.Context, m jetstream.Msg) {
	h := m.Headers()
	id := h.Get(subjects.HeaderRequestID)
	log := a.log.With("request_id", id)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sealed := services.Sealed{To: h.Get(subjects.HeaderSealedTo), From: h.Get(subjects.HeaderSealedFrom), Box: m.Data()}
	if sealed.To != "" && !a.opener.Has(sealed.To) {
		log.Error("change sealed to a key this agent does not hold; restore seal.nk from the old data dir",
			"sealed_to", sealed.To)
		_ = m.NakWithDelay(time.Minute)
		return
	}
	ch, err := a.opener.OpenChange(sealed)
	if err == nil {
		err = ch.Validate()
	}
	if err != nil || ch.RequestID != id || ch.ClinicID != a.clinic || ch.SlotID != h.Get(subjects.HeaderSlotID) {
		log.Error("change refused and terminated", "why", "unreadable change")
		if subjects.ValidRequestID(id) == nil {
			// The clinic will never apply it: stop holding its outcomes back.
			if err := a.forgetChange(cctx, id); err != nil {
				log.Warn("status: forget the unreadable change", "err", err.Error())
			}
			if slot := h.Get(subjects.HeaderSlotID); subjects.ValidSlotID(slot) == nil {
				a.releaseLater(heldSlot{slot: slot, requestID: id}) // the new time it held
			}
		}
		_ = m.Term()
		return
	}
	switch err := a.conn.Apply(cctx, ch); {
	case err == nil:
	case services.ErrorCode(err) == services.ENotFound && a.answered(cctx, ch.RequestID):
		// The request will never be stored: it was declined (its slot was
		// taken) or expired. The change has nothing left to change.
		log.Info("change for a closed request dropped", "action", ch.Action)
	case services.ErrorCode(err) == services.ENotFound:
		wait := changeWait
		if md, merr := m.Metadata(); merr == nil {
			for n := uint64(1); n < md.NumDelivered && wait < maxChangeWait; n++ {
				wait *= 2
			}
		}
		if wait >= time.Minute {
			log.Warn("change waits for its request, which is not stored yet", "action", ch.Action, "retry_in", min(wait, maxChangeWait).String())
		}
		_ = m.NakWithDelay(min(wait, maxChangeWait))
		return
	default:
		if ctx.Err() == nil {
			log.Error("apply change", "action", ch.Action, "err", err.Error())
		}
		_ = m.NakWithDelay(2 * time.Second)
		return
	}
	actx, acancel := context.WithTimeout(ctx, ackTimeout)
	defer acancel()
	if err := m.DoubleAck(actx); err != nil {
		log.Warn("ack change", "err", err.Error()) // it comes again; Apply is idempotent
		return
	}
	log.Info("change applied", "action", ch.Action)
	a.record(cctx, services.AuditChangeApplied, ch.RequestID, ch.Action)
	if ch.SlotID != "" {
		rev, _ := strconv.ParseUint(h.Get(subjects.HeaderHoldRevision), 10, 64)
		a.releaseLater(heldSlot{slot: ch.SlotID, requestID: ch.RequestID, rev: rev})
	}
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
