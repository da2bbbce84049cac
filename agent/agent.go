package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/clinicrelay/clinicrelay/agent/connector"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/auth"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// Config is everything the agent needs; it dials out and never listens.
type Config struct {
	NATSURL string
	Creds   []byte // the clinic's creds file, from `relay clinic add`
	Logger  *slog.Logger
	// Days of availability published ahead (default and most: services.DaysAhead).
	Days int
	// HeartbeatEvery is how often <clinic>.seen is written (default 15s).
	HeartbeatEvery time.Duration
	// SyncEvery bounds how long a missed change waits to be published (default 5s).
	SyncEvery time.Duration
	// Coalesce is the least time between two publications of changes
	// (default 50ms): changes within it are published together.
	Coalesce time.Duration
	// FullEvery is how often a connector that tracks its changes
	// (ChangeTracker) has every day published anyway (default 5m).
	FullEvery time.Duration
	// CheckEvery is how often the agent asks the relay which of its keys
	// are there, to put back any that vanished (default 30s).
	CheckEvery time.Duration
	// SettleWait is how long a request whose status is not there is taken
	// again before it is dropped as a failed booking (default 1m; the relay
	// answers every booking within services.BookingDeadline).
	SettleWait time.Duration
	// Workers store this many requests at once (default 128): a connector
	// that batches its writes (the console does) then stores them together.
	Workers int
	// SealKey is the clinic's curve key pair (LoadSealKeys): requests are
	// sealed to its public half, which the agent publishes to CLINICS.
	SealKey nkeys.KeyPair
	// OldSealKeys open requests sealed before the last rotations.
	OldSealKeys []nkeys.KeyPair
	// CAFile verifies the relay's TLS certificate (default: the system's roots).
	CAFile string
	// RequireTLS refuses a relay that does not offer TLS.
	RequireTLS bool
	// Dialer options added last, for tests (e.g. nats.InProcessServer).
	NATSOptions []nats.Option
	Now         func() time.Time
}

// Agent drains one clinic's requests into its connector.
type Agent struct {
	cfg    Config
	clinic string
	conn   connector.Connector
	opener *services.Opener // opens requests sealed to the clinic's key
	log    *slog.Logger

	nc     *nats.Conn
	js     jetstream.JetStream
	avail  *cjs.Bucket
	status *cjs.Statuses
	meta   *cjs.Bucket
	audit  *cjs.AgentAuditor
	holds  *cjs.Bucket
	loc    *time.Location

	published map[string]string     // AVAILABILITY key -> last value written
	refused   map[string]refusal    // "<bucket>/<key>" -> what the relay refused
	fitted    map[string]cjs.Fitted // local date -> what was left out of it
	// shownRefusals is what the connector was last told was refused.
	shownRefusals string
	lastFull      time.Time     // when every day was last published
	kick          chan struct{} // reconnected: publish every day
	stored        chan struct{} // a request was stored: its hold can go

	details detailsLimits // the patient details given to the portal (portal.go)

	mu      sync.Mutex
	release []heldSlot // stored requests whose holds go once availability is out
	// lastConnErr is why the last connection failed, logged when it changes.
	lastConnErr string
}

// New checks the config; the clinic comes from the creds' clinic tag.
func New(cfg Config, conn connector.Connector) (*Agent, error) {
	clinic, err := auth.CredsClinic(cfg.Creds)
	if err != nil {
		return nil, err
	}
	if cfg.SealKey == nil {
		return nil, errors.New("agent: a seal key is required (LoadSealKeys)")
	}
	opener, err := services.NewOpener(cfg.SealKey, cfg.OldSealKeys...)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Days <= 0 || cfg.Days > services.DaysAhead {
		cfg.Days = services.DaysAhead // the relay keeps no day beyond it
	}
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = 15 * time.Second
	}
	if cfg.SyncEvery <= 0 {
		cfg.SyncEvery = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Coalesce <= 0 {
		cfg.Coalesce = 50 * time.Millisecond
	}
	if cfg.FullEvery <= 0 {
		cfg.FullEvery = 5 * time.Minute
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 128
	}
	if cfg.SettleWait <= 0 {
		cfg.SettleWait = time.Minute
	}
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = 30 * time.Second
	}
	return &Agent{cfg: cfg, clinic: clinic, conn: conn, opener: opener, published: map[string]string{},
		refused: map[string]refusal{}, fitted: map[string]cjs.Fitted{}, kick: make(chan struct{}, 1), stored: make(chan struct{}, 1),
		log: cfg.Logger.With("clinic_id", clinic, "connector", conn.Name())}, nil
}

// Clinic is the clinic this agent serves.
func (a *Agent) Clinic() string { return a.clinic }

func (a *Agent) signal() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// connect dials out; it retries forever with jittered backoff and logs every
// permission violation with its subject (nats.go reports them only async).
func (a *Agent) connect() error {
	co, err := auth.CredsOption(a.cfg.Creds)
	if err != nil {
		return err
	}
	opts := []nats.Option{
		co,
		nats.Name("clinic-agent " + a.clinic),
		nats.CustomInboxPrefix(subjects.AgentInboxPrefix(a.clinic)),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			d := min(time.Duration(attempts)*250*time.Millisecond, 10*time.Second)
			return d/2 + rand.N(d/2+1)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				a.log.Error("permission violation", "err", err.Error())
				return
			}
			a.log.Warn("nats async error", "err", err.Error())
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed it ourselves
				a.log.Warn("disconnected from relay", "err", err.Error())
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			a.log.Info("reconnected to relay")
			a.signal()
		}),
		nats.ReconnectErrHandler(a.connectFailed),
	}
	if a.cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(a.cfg.CAFile))
	}
	if a.cfg.RequireTLS {
		opts = append(opts, nats.Secure())
	}
	nc, err := nats.Connect(a.cfg.NATSURL, append(opts, a.cfg.NATSOptions...)...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", a.cfg.NATSURL, err)
	}
	a.nc = nc
	a.js, err = jetstream.New(nc)
	a.audit = cjs.NewAgentAuditor(nc, a.clinic, a.log)
	if s, ok := a.conn.(connector.StaffAuditor); ok {
		s.SetAuditor(a.audit)
	}
	if g, ok := a.conn.(connector.PortalGiver); ok {
		g.SetPortalAccess(portalAccess{a})
	}
	return err
}

// connectFailed logs why the agent cannot reach the relay, in words an
// operator can act on, each time the reason changes (not every attempt).
func (a *Agent) connectFailed(_ *nats.Conn, err error) {
	why := cmp.Or(auth.ConnectProblem(err, "use a --nats-url with a name it covers"), err.Error())
	a.mu.Lock()
	same := why == a.lastConnErr
	a.lastConnErr = why
	a.mu.Unlock()
	if !same {
		a.log.Error("cannot connect to the relay: trying again", "why", why, "url", a.cfg.NATSURL)
	}
}

// retryAttempt bounds one attempt of retry: the relay answers in
// milliseconds, and a request in flight when the connection dropped gets no
// answer at all, so it is sent again soon rather than waited on.
const retryAttempt = 5 * time.Second

// retry runs fn until it succeeds or ctx ends, backing off up to 10s.
func retry(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	for wait := 200 * time.Millisecond; ; wait = min(wait*2, 10*time.Second) {
		cctx, cancel := context.WithTimeout(ctx, retryAttempt)
		err := fn(cctx)
		cancel()
		if err == nil {
			return nil
		}
		log.Warn("retrying", "op", what, "err", err.Error(), "in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// Run connects, then drains requests and publishes until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.connect(); err != nil {
		return err
	}
	defer a.drain()
	if err := retry(ctx, a.log, "open buckets", a.open); err != nil {
		return nil // ctx ended before the relay answered
	}
	done := make(chan struct{})
	go func() { defer close(done); a.consume(ctx) }()
	a.log.Info("agent running")
	a.loop(ctx)
	<-done
	return nil
}

// consume keeps requests flowing from the clinic's consumer into the
// connector, Workers at a time. It makes the consumer first, and makes it
// again whenever the server has lost it: consumers live in memory, so a relay
// restart or a long absence (AgentIdle) drops them, never the requests.
func (a *Agent) consume(ctx context.Context) {
	sem := make(chan struct{}, a.cfg.Workers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	stopped := false
	defer func() {
		mu.Lock()
		stopped = true // no store starts after this
		mu.Unlock()
		waitAtMost(&wg, 5*time.Second) // stores see ctx end; a stuck one is not waited for
	}()
	handle := func(m jetstream.Msg) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return // not acked: it comes again
		}
		mu.Lock()
		if stopped {
			mu.Unlock()
			<-sem
			return
		}
		wg.Add(1)
		mu.Unlock()
		go func() {
			defer func() { <-sem; wg.Done() }()
			a.handle(ctx, m)
		}()
	}
	for ctx.Err() == nil {
		var cons jetstream.Consumer
		if err := retry(ctx, a.log, "consumer", func(ctx context.Context) (err error) {
			cons, err = cjs.AskAgentConsumer(ctx, a.js, a.clinic)
			return err
		}); err != nil {
			return
		}
		lost := make(chan struct{}, 1)
		cc, err := cons.Consume(handle, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if consumerLost(err) {
				select {
				case lost <- struct{}{}:
				default:
				}
			}
			a.log.Warn("consume", "err", err.Error())
		}))
		if err != nil {
			a.log.Warn("consume", "err", err.Error())
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}
		select {
		case <-ctx.Done():
		case <-lost:
		case <-cc.Closed():
		}
		cc.Stop()
		select { // not in a tight loop if it keeps ending at once
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func waitAtMost(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// consumerLost says the server no longer has the consumer: ask for it
// again. A missed heartbeat is not enough (nats.go pulls again by itself).
func consumerLost(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, jetstream.ErrConsumerNotFound)
}

// drain lets queued audit events, in-flight acks and puts finish, then
// closes; bounded at 15s.
func (a *Agent) drain() {
	a.audit.Close(5 * time.Second)
	if err := a.nc.Drain(); err != nil {
		a.nc.Close()
		return
	}
	for deadline := time.Now().Add(10 * time.Second); !a.nc.IsClosed() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	a.nc.Close()
}

// open loads the clinic profile. The agent reads its keys through their
// subjects (it holds no STREAM.INFO grant) and writes them through the relay
// (cjs.NewAgentBucket), which checks every write.
func (a *Agent) open(ctx context.Context) error {
	a.meta = cjs.NewAgentBucket(a.js, subjects.BucketClinics, a.clinic)
	a.avail = cjs.NewAgentBucket(a.js, subjects.BucketAvailability, a.clinic)
	a.holds = cjs.NewAgentBucket(a.js, subjects.BucketHolds, a.clinic)
	a.status = cjs.NewStatuses(cjs.NewAgentBucket(a.js, subjects.BucketStatus, a.clinic))
	var c services.Clinic
	if _, err := cjs.GetJSON(ctx, a.meta, subjects.ClinicKey(a.clinic), &c); err != nil {
		return fmt.Errorf("clinic profile: %w", err)
	}
	loc, err := services.LoadZone(c.TimeZone)
	if err != nil {
		return err
	}
	a.loc = loc
	a.conn.SetClinic(c)
	// Requests are sealed to this key: the relay takes none until it is out.
	return cjs.PutJSON(ctx, a.meta, subjects.ClinicSubKey(a.clinic, subjects.KeySealKey), a.opener.PublicKey())
}

// loop publishes availability, outcomes and the heartbeat on every change,
// reconnect and tick, so nothing decided while offline is lost. A change
// republishes the days it touched (every day if the connector cannot say
// which); a reconnect every day; a tick every day when fullDue.
func (a *Agent) loop(ctx context.Context) {
	hb := time.NewTicker(a.cfg.HeartbeatEvery)
	defer hb.Stop()
	sync := time.NewTicker(a.cfg.SyncEvery)
	defer sync.Stop()
	check := time.NewTicker(a.cfg.CheckEvery)
	defer check.Stop()
	a.sync(ctx, true)
	a.heartbeat(ctx)
	// Changes that come within Coalesce of the last publication wait for
	// the rest of it and go together: a busy clinic puts each changed day
	// once per Coalesce, not once per request.
	// The window stretches to twice the last publication's length, so a
	// clinic draining a backlog over many days spends at most a third of
	// its time republishing them.
	var last time.Time
	var took time.Duration
	var later <-chan time.Time
	changed := func() {
		if wait := max(a.cfg.Coalesce, min(2*took, time.Second)) - time.Since(last); wait > 0 {
			if later == nil {
				later = time.After(wait)
			}
			return
		}
		t0 := time.Now()
		a.sync(ctx, false)
		last, took = time.Now(), time.Since(t0)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.conn.Changed():
			changed()
		case <-a.stored:
			changed()
		case <-later:
			later = nil
			changed()
		case <-a.kick:
			// Reconnected, maybe to a relay restored from a backup: what
			// it holds is compared afresh, and every day published.
			// What it refused is tried again too: its rules may differ.
			a.published, a.refused = map[string]string{}, map[string]refusal{}
			a.lastFull = time.Time{}
			// A restored relay has no seal key of the clinic (see `relay
			// restore`): it takes no request until this one is out.
			a.putSealKey(ctx)
			a.sync(ctx, true)
		case <-check.C:
			if a.vanished(ctx) {
				a.sync(ctx, true)
			}
		case <-sync.C:
			a.sync(ctx, true)
		case <-hb.C:
			a.heartbeat(ctx)
		}
	}
}

// sync publishes outcomes, then availability: the changed days, or every
// day when the connector cannot say which or when a tick finds it fullDue.
func (a *Agent) sync(ctx context.Context, tick bool) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.publishOutcomes(cctx); err != nil {
		a.log.Warn("publish outcomes", "err", err.Error())
	}
	dates, partial := a.changedDays()
	var err error
	// After a failed publication (lastFull zero) every day goes, so the days
	// whose changes it took are not lost.
	if !partial || a.lastFull.IsZero() || tick && a.fullDue() {
		start := a.cfg.Now() // what it publishes is as of now, however long it takes
		err = a.publishAvailability(cctx)
		if err == nil {
			a.lastFull = start
		}
	} else {
		err = a.publishDays(cctx, dates)
	}
	defer a.reportRefusals()
	if err != nil {
		a.lastFull = time.Time{} // the next tick publishes every day
		a.log.Warn("publish availability", "err", err.Error())
		return
	}
	a.releaseHolds(cctx)
}

// fullDue says a connector that tracks its changes is due a publication of
// every day anyway: after a failed one, on a new local date (a day enters the
// window, past ones leave), and every FullEvery.
func (a *Agent) fullDue() bool {
	now := a.cfg.Now()
	return a.lastFull.IsZero() || now.Sub(a.lastFull) >= a.cfg.FullEvery ||
		services.Date(now, a.loc) != services.Date(a.lastFull, a.loc)
}

// changedDays asks a ChangeTracker connector which local dates changed;
// false means any may have, so every day must be published.
func (a *Agent) changedDays() (map[string]bool, bool) {
	ct, ok := a.conn.(connector.ChangeTracker)
	if !ok {
		return nil, false
	}
	slots, all := ct.TakeChanges()
	if all {
		return nil, false
	}
	dates := map[string]bool{}
	for _, id := range slots {
		if _, start, err := services.ParseSlotID(id); err == nil {
			dates[services.Date(start, a.loc)] = true
		}
	}
	return dates, true
}

// vanished asks the relay which of the agent's keys are there and forgets
// those it published that are not (a purge, a new bucket): the next
// publication puts them back. It reports whether any had vanished.
func (a *Agent) vanished(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	have, err := cjs.AskAgentKeys(cctx, a.nc, a.clinic)
	if err != nil {
		a.log.Warn("check published keys", "err", err.Error())
		return false
	}
	gone := 0
	if keys, ok := have[subjects.BucketClinics]; ok && !keys[subjects.ClinicSubKey(a.clinic, subjects.KeySealKey)] {
		// Without its seal key the web takes no request for the clinic.
		a.putSealKey(cctx)
		gone++
	}
	for k := range a.published {
		bucket, key, _ := strings.Cut(k, "/")
		if keys, ok := have[bucket]; ok && !keys[key] {
			delete(a.published, k)
			gone++
		}
	}
	if gone == 0 {
		return false
	}
	a.log.Warn("published keys vanished from the relay: publishing them again", "keys", gone)
	a.lastFull = time.Time{}
	return true
}

// putSealKey publishes the public half of the clinic's seal key, which the
// web seals requests to.
func (a *Agent) putSealKey(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := cjs.PutJSON(cctx, a.meta, subjects.ClinicSubKey(a.clinic, subjects.KeySealKey), a.opener.PublicKey()); err != nil {
		a.log.Warn("seal key", "err", err.Error())
	}
}

// heldSlot is the web's hold on a stored request's slot; rev is the hold's
// revision when the request carried it (0: look the hold up first).
type heldSlot struct {
	slot, requestID string
	rev             uint64
}

// releaseHolds drops the web's holds on requests the connector has stored:
// the availability just published no longer offers their slots, and a slot
// declined later must become free again.
func (a *Agent) releaseHolds(ctx context.Context) {
	a.mu.Lock()
	todo := a.release
	a.release = nil
	a.mu.Unlock()
	for i, h := range todo {
		key := subjects.HoldKey(a.clinic, h.slot)
		var err error
		if h.rev > 0 {
			err = a.holds.Delete(ctx, key, h.rev)
		}
		if h.rev == 0 || errors.Is(err, cjs.ErrRevision) {
			// No revision, or a stale one (a restored relay), or the hold
			// expired and another patient holds it: release it only if it
			// is still this request's.
			err = cjs.ReleaseHold(ctx, a.holds, key, h.requestID)
		}
		if err != nil {
			a.log.Warn("release hold", "request_id", h.requestID, "err", err.Error())
			a.mu.Lock()
			a.release = append(a.release, todo[i:]...)
			a.mu.Unlock()
			return
		}
	}
}

// releaseLater queues the hold of a stored request for release.
func (a *Agent) releaseLater(h heldSlot) {
	a.mu.Lock()
	a.release = append(a.release, h)
	a.mu.Unlock()
}

func (a *Agent) heartbeat(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	hb := services.Heartbeat{At: a.cfg.Now().UTC(), Connector: a.conn.Name(), Healthy: true, Rejected: a.rejected()}
	if h, ok := a.conn.(connector.HealthReporter); ok {
		if err := h.Health(); err != nil {
			hb.Healthy, hb.Problem = false, services.PlainLine(err.Error(), 500)
		}
	}
	if err := cjs.PutJSON(cctx, a.meta, subjects.ClinicSubKey(a.clinic, subjects.KeySeen), hb); err != nil {
		a.log.Warn("heartbeat", "err", err.Error())
	}
}

// record audits an access of the agent to one of its clinic's requests.
func (a *Agent) record(ctx context.Context, action, requestID, detail string) {
	a.audit.Audit(ctx, services.AuditEvent{At: a.cfg.Now().UTC(), Clinic: a.clinic, Action: action, Actor: "agent",
		RequestID: requestID, Detail: detail})
}
