package agent

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// handle stores one request and acks it only once it is stored. A request
// that cannot be stored is not acked: it is redelivered after a delay.
func (a *Agent) handle(ctx context.Context, m jetstream.Msg) {
	id := m.Headers().Get(subjects.HeaderRequestID)
	log := a.log.With("request_id", id)
	var req services.Request
	if err := json.Unmarshal(m.Data(), &req); err != nil || req.ID != id || req.ClinicID != a.clinic ||
		subjects.ValidRequestID(req.ID) != nil {
		// Not ours or not readable: keeping it would block nothing but
		// would retry forever; terminate and say so (no body in the log).
		log.Error("unreadable request terminated")
		_ = m.Term()
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.conn.Store(cctx, req); err != nil {
		if services.ErrorCode(err) == services.EInvalid {
			log.Error("request refused by the connector, terminated", "err", err.Error())
			_ = m.Term()
			return
		}
		log.Error("store request", "err", err.Error())
		_ = m.NakWithDelay(2 * time.Second)
		return
	}
	if err := a.markDelivered(cctx, req); err != nil {
		log.Warn("status delivered", "err", err.Error())
	}
	if err := m.DoubleAck(cctx); err != nil {
		// Stored but not acked: it comes again and Store is idempotent.
		log.Warn("ack", "err", err.Error())
		return
	}
	log.Info("request stored")
	a.signal()
}

// markDelivered moves STATUS from received to delivered, never backwards: a
// redelivered request whose outcome is already set leaves it alone.
func (a *Agent) markDelivered(ctx context.Context, req services.Request) error {
	key := subjects.StatusKey(a.clinic, req.ID)
	e, err := a.status.Get(ctx, key)
	var st services.Status
	var rev uint64
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		st = services.Status{RequestID: req.ID, ClinicID: a.clinic, SlotID: req.SlotID}
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			return err
		}
		if st.State != services.StateReceived {
			return nil
		}
		rev = e.Revision()
	}
	st.State, st.UpdatedAt = services.StateDelivered, a.cfg.Now().UTC()
	b, _ := json.Marshal(st)
	if rev == 0 {
		_, err = a.status.Create(ctx, key, b)
	} else {
		_, err = a.status.Update(ctx, key, b, rev)
	}
	return err
}
