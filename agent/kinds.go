package agent

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/agent/connector"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// kind is one kind of message on the clinic's queue (subjects.KindOf): how
// its sealed body opens and what the clinic's system does with it. The
// envelope around them is one (handle): the seal key check, the refusal of a
// body that does not open, the ack once the connector has it, the ack's
// timeout. A new kind is one entry here and one connector role.
type kind struct {
	// open opens and checks the body against its routing headers.
	open func(a *Agent, env envelope) (any, error)
	// refused tells whoever waits on a body that did not open (optional).
	refused func(ctx context.Context, a *Agent, env envelope)
	// apply hands the body to the connector and says what becomes of the
	// message.
	apply func(ctx context.Context, a *Agent, env envelope, body any) verdict
}

// kinds is every kind the agent takes.
var kinds = map[string]kind{
	subjects.KindRequests: {open: openRequest, refused: refusedRequest, apply: applyRequest},
	subjects.KindChanges:  {open: openChange, refused: refusedChange, apply: applyChange},
	subjects.KindIntake:   {open: openIntake, apply: applyIntake},
	subjects.KindPortal:   {open: openPortalCheck, apply: applyPortalCheck},
}

// envelope is a message's routing: its headers, never its body in clear.
type envelope struct {
	m         jetstream.Msg
	kind      string
	requestID string
	slotID    string
	sealed    services.Sealed
	log       *slog.Logger
}

// verdict is what becomes of a message. The zero verdict leaves it: it comes
// again after the consumer's ack wait (the agent is stopping).
type verdict struct {
	ack   bool          // the connector has it: ack, then after
	retry time.Duration // take it again after this
	term  bool          // it can never be taken: terminate it
	after func(ctx context.Context)
}

func ack(after func(ctx context.Context)) verdict { return verdict{ack: true, after: after} }
func again(d time.Duration) verdict               { return verdict{retry: d} }

// handle runs one message through its kind, in the one envelope.
func (a *Agent) handle(ctx context.Context, m jetstream.Msg) {
	h := m.Headers()
	env := envelope{m: m, kind: subjects.KindOf(m.Subject()), requestID: h.Get(subjects.HeaderRequestID),
		slotID: h.Get(subjects.HeaderSlotID),
		sealed: services.Sealed{To: h.Get(subjects.HeaderSealedTo), From: h.Get(subjects.HeaderSealedFrom), Box: m.Data()}}
	env.log = a.log.With("request_id", env.requestID, "kind", env.kind)
	k, ok := kinds[env.kind]
	if !ok {
		env.log.Error("message of an unknown kind terminated")
		_ = m.Term()
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if env.sealed.To != "" && !a.opener.Has(env.sealed.To) {
		// Sealed to a key this agent does not hold (a reinstall with a new
		// seal.nk, or another agent's): keep it for the agent that does.
		env.log.Error("message sealed to a key this agent does not hold; restore seal.nk from the old data dir",
			"sealed_to", env.sealed.To)
		_ = m.NakWithDelay(time.Minute)
		return
	}
	body, err := k.open(a, env)
	if err != nil {
		// Not sealed to this clinic, tampered with, or not readable:
		// retrying cannot help (no body in the log).
		env.log.Error("message refused and terminated", "why", "unreadable "+env.kind)
		if k.refused != nil && subjects.ValidRequestID(env.requestID) == nil {
			k.refused(cctx, a, env)
		}
		_ = m.Term()
		return
	}
	v := k.apply(cctx, a, env, body)
	switch {
	case v.term:
		_ = m.Term()
	case v.retry > 0:
		_ = m.NakWithDelay(v.retry)
	case v.ack:
		// A short wait for the ack: an ack the server drops (the consumer
		// was made again after a relay restart) gets no answer, and the
		// message comes again anyway; every kind's apply is idempotent.
		actx, acancel := context.WithTimeout(ctx, ackTimeout)
		defer acancel()
		if err := m.DoubleAck(actx); err != nil {
			env.log.Warn("ack", "err", err.Error())
			return
		}
		if v.after != nil {
			v.after(cctx)
		}
	}
}

// holdRev is the hold's revision a message carries, 0 if none.
func (env envelope) holdRev() uint64 {
	rev, _ := strconv.ParseUint(env.m.Headers().Get(subjects.HeaderHoldRevision), 10, 64)
	return rev
}

func openIntake(a *Agent, env envelope) (any, error) {
	in, err := a.opener.OpenIntake(env.sealed)
	if err == nil {
		err = in.Validate()
	}
	if err == nil && (in.RequestID != env.requestID || in.ClinicID != a.clinic) {
		err = services.Errorf(services.EInvalid, "intake: routing IDs differ from the sealed ones")
	}
	return in, err
}

// applyIntake hands an intake form to a connector that takes them; one that
// does not leaves it queued, sealed, for one that does (it is never dropped
// for waiting: it leaves the queue only with MaxAge).
func applyIntake(ctx context.Context, a *Agent, env envelope, body any) verdict {
	in := body.(services.Intake)
	sink, ok := a.conn.(connector.IntakeSink)
	if !ok {
		env.log.Warn("intake form kept queued: this connector takes none", "connector", a.conn.Name())
		return again(time.Hour)
	}
	switch err := sink.StoreIntake(ctx, in); {
	case err == nil:
		return ack(func(ctx context.Context) {
			env.log.Info("intake stored")
			a.record(ctx, services.AuditIntakeDelivered, in.RequestID, a.conn.Name())
		})
	case services.ErrorCode(err) == services.ENotFound:
		return again(changeWait) // its request is not stored yet
	default:
		if ctx.Err() == nil {
			env.log.Error("store intake", "err", err.Error())
		}
		return again(2 * time.Second)
	}
}
