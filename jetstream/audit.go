package jetstream

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// Auditor publishes audit events to AUDIT without waiting. The stream's acks
// come back on the JetStream context, which must be made with
// AuditErrHandler so that an event AUDIT refused is logged.
type Auditor struct {
	JS     jetstream.JetStream
	Logger *slog.Logger
}

var _ services.Auditor = (*Auditor)(nil)

// Audit records ev.
func (a *Auditor) Audit(_ context.Context, ev services.AuditEvent) {
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	b, _ := json.Marshal(ev)
	if _, err := a.JS.PublishAsync(subjects.Audit(ev.Clinic, ev.Action), b); err != nil {
		a.lost(ev, err)
	}
}

// AuditErrHandler logs an asynchronous publish that JetStream refused: for
// an audit event its subject names the clinic and the action.
func AuditErrHandler(log *slog.Logger) jetstream.JetStreamOpt {
	return jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
		log.Error("async publish lost", "subject", m.Subject, "err", err.Error())
	})
}

// AuditNow records ev and waits for AUDIT to store it: for commands, which
// exit right after.
func (a *Auditor) AuditNow(ctx context.Context, ev services.AuditEvent) error {
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	b, _ := json.Marshal(ev)
	_, err := a.JS.Publish(ctx, subjects.Audit(ev.Clinic, ev.Action), b)
	return err
}

func (a *Auditor) lost(ev services.AuditEvent, err error) {
	if a.Logger != nil {
		a.Logger.Error("audit event lost", "clinic_id", ev.Clinic, "action", ev.Action, "request_id", ev.RequestID,
			"err", err.Error())
	}
}

// ReadAudit calls fn for each event of clinic since the given time, oldest
// first, until the trail's end.
func ReadAudit(ctx context.Context, js jetstream.JetStream, clinic string, since time.Time, fn func(services.AuditEvent)) error {
	s, err := js.Stream(ctx, subjects.StreamAudit)
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjects.AuditFilter(clinic)}}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	c, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	for {
		batch, err := c.Fetch(256, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var ev services.AuditEvent
			if json.Unmarshal(m.Data(), &ev) == nil {
				fn(ev)
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}
