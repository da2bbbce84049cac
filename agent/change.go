package agent

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// maxChangeWaits is how many times a change to a request the connector has
// not stored yet is put back (about a minute): the request is normally just
// ahead of it in the queue.
const maxChangeWaits = 30

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
		_ = m.Term()
		return
	}
	switch err := a.conn.Apply(cctx, ch); {
	case err == nil:
	case services.ErrorCode(err) == services.ENotFound:
		if md, merr := m.Metadata(); merr == nil && md.NumDelivered >= maxChangeWaits {
			log.Error("change for a request never stored; terminated", "action", ch.Action)
			_ = m.Term()
			return
		}
		_ = m.NakWithDelay(2 * time.Second)
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
