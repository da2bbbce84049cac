package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"golang.org/x/time/rate"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// Agents' writes. An agent publishes to no stream: a publish it may make can
// carry any header (Nats-Rollup: all purges the whole stream, whatever the
// subject) and can make any number of keys, and subject permissions restrict
// neither. It asks the relay instead (subjects.AgentWrite, AgentAudit); the
// relay takes the clinic from the subject, checks the key, the value and the
// operation against agentKeys, and writes with headers of its own. What one
// clinic can keep at the relay is then bounded by construction:
//
//   - AVAILABILITY: the days of its booking window, services.DaysAhead ahead,
//     each at most MaxDayBytes;
//   - CLINICS: <clinic>.seen, .providers and .sealkey, each at most MaxSmallBytes;
//   - HOLDS: none of its own making; it may release (delete) the holds the web made;
//   - STATUS: the statuses the web made for its requests, which it may update;
//   - AUDIT: events about its requests, AgentAuditRate of them.

// Agent write operations (subjects.HeaderOp).
const (
	OpPut    = "put"
	OpCreate = "create"
	OpUpdate = "update"
	OpDelete = "delete"
)

// AgentAuditRate and AgentAuditBurst bound the audit events one clinic's
// agent can add to AUDIT, which keeps them six years: a burst covers a
// backlog of thousands of requests drained at once (three events each).
const (
	AgentAuditRate  = 20 // events a second, sustained
	AgentAuditBurst = 30_000
)

// agentKey is what an agent may do with its keys of one bucket.
type agentKey struct {
	ops map[string]bool
	// needRev: a write must name the revision the key still has.
	needRev bool
	max     int
	// tooBig says what to do about a value over max.
	tooBig string
	// check validates the key's suffix (after "<clinic>.") and, for a put,
	// the value; now is the relay's clock.
	check func(clinic, suffix string, value []byte, op string, now time.Time) error
}

// oversize says why a value of n bytes is too big for the bucket, or "".
func (r agentKey) oversize(bucket string, n int) string {
	if r.max == 0 || n <= r.max {
		return ""
	}
	msg := fmt.Sprintf("%s: a value is at most %d bytes, this one %d", bucket, r.max, n)
	if r.tooBig != "" {
		msg += ": " + r.tooBig
	}
	return msg
}

var agentKeys = map[string]agentKey{
	subjects.BucketAvailability: {ops: map[string]bool{OpPut: true, OpDelete: true}, max: MaxDayBytes, check: checkAgentDay,
		tooBig: DayTooBig},
	subjects.BucketClinics: {ops: map[string]bool{OpPut: true}, max: MaxSmallBytes, check: checkAgentClinicKey},
	subjects.BucketHolds:   {ops: map[string]bool{OpDelete: true}, needRev: true, check: checkAgentHold},
	subjects.BucketStatus:  {ops: map[string]bool{OpUpdate: true}, needRev: true, max: MaxSmallBytes, check: checkAgentStatus},
}

// AvailabilityWindow is the first and last date (YYYY-MM-DD, UTC) an agent
// may publish availability for at now: today in any time zone through
// services.DaysAhead days ahead.
func AvailabilityWindow(now time.Time) (first, last string) {
	today := now.UTC().Truncate(24 * time.Hour)
	return today.AddDate(0, 0, -1).Format(time.DateOnly), today.AddDate(0, 0, services.DaysAhead+1).Format(time.DateOnly)
}

func checkAgentDay(clinic, date string, value []byte, op string, now time.Time) error {
	if err := subjects.ValidDate(date); err != nil {
		return err
	}
	if op == OpDelete {
		return nil // only a day that exists is deleted (see write)
	}
	if first, last := AvailabilityWindow(now); date < first || date > last {
		return fmt.Errorf("date %s is outside the booking window %s to %s", date, first, last)
	}
	_, err := DecodeDay(subjects.AvailabilityKey(clinic, date), value)
	return err
}

func checkAgentClinicKey(_, suffix string, value []byte, _ string, _ time.Time) error {
	switch suffix {
	case subjects.KeySeen:
		var hb services.Heartbeat
		if err := strictJSON(value, &hb); err != nil {
			return fmt.Errorf("seen: %w", err)
		}
		if err := services.PlainText("seen: problem", hb.Problem, 500); err != nil {
			return err
		}
		return services.PlainText("seen: rejected", hb.Rejected, 500)
	case subjects.KeyProviders:
		var ps []services.Provider
		if err := strictJSON(value, &ps); err != nil {
			return fmt.Errorf("providers: %w", err)
		}
		for i, p := range ps {
			if err := subjects.ValidProviderID(p.ID); err != nil {
				return fmt.Errorf("providers[%d]: %w", i, err)
			}
			if err := services.PlainText(fmt.Sprintf("providers[%d]: name", i), p.Name, 200); err != nil {
				return err
			}
			if err := p.Policy.Validate(fmt.Sprintf("providers[%d].policy.", i)); err != nil {
				return err
			}
		}
		return nil
	case subjects.KeySealKey:
		var k string
		if err := strictJSON(value, &k); err != nil || !nkeys.IsValidPublicCurveKey(k) {
			return errors.New("sealkey: must be the clinic's public curve key")
		}
		return nil
	}
	return fmt.Errorf("key %q: an agent writes only %s, %s and %s in %s", suffix, subjects.KeySeen,
		subjects.KeyProviders, subjects.KeySealKey, subjects.BucketClinics)
}

func checkAgentHold(_, slot string, _ []byte, _ string, _ time.Time) error {
	return subjects.ValidSlotID(slot)
}

func checkAgentStatus(clinic, request string, value []byte, _ string, _ time.Time) error {
	if err := subjects.ValidRequestID(request); err != nil {
		return err
	}
	var st services.Status
	if err := strictJSON(value, &st); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	switch {
	case st.ClinicID != clinic || st.RequestID != request:
		return fmt.Errorf("status names request %q of clinic %q, not its key's", st.RequestID, st.ClinicID)
	case !st.State.Valid():
		return fmt.Errorf("status: unknown state %q", st.State)
	case st.SlotID != "" && subjects.ValidSlotID(st.SlotID) != nil:
		return fmt.Errorf("status: slot_id %q is not a slot id", st.SlotID)
	case st.ProposedSlot != "" && subjects.ValidSlotID(st.ProposedSlot) != nil:
		return fmt.Errorf("status: proposed_slot %q is not a slot id", st.ProposedSlot)
	}
	return services.PlainText("status: reason", st.Reason, services.MaxOutcomeReason)
}

// strictJSON decodes b into v; anything after the value is an error.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(v); err != nil {
		return errors.New("not valid JSON of the expected shape")
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

// agentWriteReply is the relay's answer to an agent's write or audit event.
type agentWriteReply struct {
	Revision uint64 `json:"revision,omitempty"`
	// Code is "revision" (the key moved on), "refused" (the write breaks a
	// rule: Error says which) or "unavailable" (try again).
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// AgentWrites is the relay's side: it makes agents' writes and records
// their audit events. Relays sharing a cluster share the work (queue group
// "relay").
type AgentWrites struct {
	JS jetstream.JetStream // the relay's own, allowed to write every bucket and AUDIT
	// Active says whether clinic is onboarded and not revoked.
	Active func(clinic string) bool
	Now    func() time.Time
	Logger *slog.Logger

	mu sync.Mutex
	// audits has a limiter per clinic, made only for an active one (audit
	// checks first), so it holds at most the clinics onboarded, never one
	// per subject a stranger makes up.
	audits map[string]*rate.Limiter
	// refusals has a limiter per active clinic of the refusals logged.
	refusals map[string]*rate.Limiter
}

// Serve answers on nc until the subscriptions are drained.
func (s *AgentWrites) Serve(nc *nats.Conn) error {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := nc.QueueSubscribe(subjects.AllAgentWrites, "relay", s.handleWrite); err != nil {
		return fmt.Errorf("serve agent writes: %w", err)
	}
	if _, err := nc.QueueSubscribe(subjects.AllAgentAudits, "relay", s.handleAudit); err != nil {
		return fmt.Errorf("serve agent audit: %w", err)
	}
	if _, err := nc.QueueSubscribe(subjects.AllAgentKeys, "relay", s.handleKeys); err != nil {
		return fmt.Errorf("serve agent keys: %w", err)
	}
	// The server has the subscriptions once Serve returns: an agent asking
	// right after gets an answer, not "no responders".
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("serve agent writes: %w", err)
	}
	return nil
}

// agentKeysReply lists a clinic's keys, per bucket.
type agentKeysReply struct {
	Keys  map[string][]string `json:"keys,omitempty"`
	Error string              `json:"error,omitempty"`
}

// censusBuckets are the buckets whose keys an agent republishes when they vanish.
var censusBuckets = []string{subjects.BucketAvailability, subjects.BucketClinics}

// handleKeys answers which keys of the clinic AVAILABILITY and CLINICS hold:
// at most the window's days and three CLINICS keys, so the answer is small.
func (s *AgentWrites) handleKeys(m *nats.Msg) {
	clinic := strings.Split(m.Subject, ".")[2]
	r := agentKeysReply{Keys: map[string][]string{}}
	if subjects.ValidClinicID(clinic) != nil || !s.Active(clinic) {
		r = agentKeysReply{Error: "no active clinic " + clinic}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, b := range censusBuckets {
		if r.Error != "" {
			break
		}
		st, err := s.JS.Stream(ctx, subjects.KVStream(b))
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = st.Info(ctx, jetstream.WithSubjectFilter(subjects.KVSubject(b, subjects.KVKeyUnder(clinic))))
		}
		if err != nil {
			s.Logger.Warn("agent keys", "clinic_id", clinic, "bucket", b, "err", err.Error())
			r = agentKeysReply{Error: "the relay could not list the keys; try again"}
			break
		}
		keys := []string{}
		for subj := range info.State.Subjects {
			keys = append(keys, strings.TrimPrefix(subj, subjects.KVSubject(b, "")))
		}
		r.Keys[b] = keys
	}
	b, _ := json.Marshal(r)
	_ = m.Respond(b)
}

// AskAgentKeys is the agent's side of handleKeys: the keys of clinic each
// bucket holds ("<clinic>.<suffix>"), delete markers included.
func AskAgentKeys(ctx context.Context, nc *nats.Conn, clinic string) (map[string]map[string]bool, error) {
	m, err := nc.RequestWithContext(ctx, subjects.AgentKeys(clinic), nil)
	if err != nil {
		return nil, fmt.Errorf("ask the relay for the keys: %w", err)
	}
	var r agentKeysReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, fmt.Errorf("ask the relay for the keys: %w", err)
	}
	if r.Error != "" {
		return nil, errors.New(r.Error)
	}
	out := map[string]map[string]bool{}
	for b, keys := range r.Keys {
		out[b] = map[string]bool{}
		for _, k := range keys {
			out[b][k] = true
		}
	}
	return out, nil
}

func respond(m *nats.Msg, r agentWriteReply) {
	b, _ := json.Marshal(r)
	_ = m.Respond(b)
}

func refused(format string, args ...any) agentWriteReply {
	return agentWriteReply{Code: "refused", Error: fmt.Sprintf(format, args...)}
}

func (s *AgentWrites) handleWrite(m *nats.Msg) {
	// relay.agents.<clinic>.kv.<bucket>.<suffix>
	tok := strings.Split(m.Subject, ".")
	if len(tok) != 6 {
		respond(m, refused("subject %q is not relay.agents.<clinic>.kv.<bucket>.<key>", m.Subject))
		return
	}
	clinic, bucket, suffix := tok[2], tok[4], tok[5]
	r := s.write(clinic, bucket, suffix, m)
	respond(m, r)
	// The operator sees a clinic whose agent writes what the relay refuses,
	// at most once a minute per clinic: the agent's log has every refusal.
	if r.Code == "refused" && subjects.ValidClinicID(clinic) == nil && s.Active(clinic) &&
		s.limiter(&s.refusals, clinic, rate.Every(time.Minute), 1).Allow() {
		s.Logger.Warn("agent write refused", "clinic_id", clinic, "bucket", bucket, "why", r.Error)
	}
}

func (s *AgentWrites) write(clinic, bucket, suffix string, m *nats.Msg) agentWriteReply {
	if subjects.ValidClinicID(clinic) != nil || !s.Active(clinic) {
		return refused("no active clinic %s", clinic)
	}
	rule, ok := agentKeys[bucket]
	if !ok {
		return refused("an agent writes no keys of %q", bucket)
	}
	op := m.Header.Get(subjects.HeaderOp)
	if !rule.ops[op] {
		return refused("%s: an agent may not %q its keys", bucket, op)
	}
	rev, err := strconv.ParseUint(m.Header.Get(subjects.HeaderRevision), 10, 64)
	if rule.needRev && (err != nil || rev == 0) {
		return refused("%s: a %s must name the key's revision", bucket, op)
	}
	if op == OpDelete && len(m.Data) > 0 {
		return refused("%s: a delete carries no value", bucket)
	}
	if msg := rule.oversize(bucket, len(m.Data)); msg != "" {
		return refused("%s", msg)
	}
	if err := rule.check(clinic, suffix, m.Data, op, s.Now()); err != nil {
		return refused("%s: %s", bucket, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, key := NewBucket(s.JS, bucket), clinic+"."+suffix
	var nrev uint64
	switch op {
	case OpPut:
		nrev, err = b.Put(ctx, key, m.Data)
	case OpUpdate:
		nrev, err = b.Update(ctx, key, m.Data, rev)
	case OpDelete:
		if rev == 0 {
			// Only a key that is there: deleting absent keys would leave
			// a marker each, and an agent could make them without end.
			var e Entry
			if e, err = b.Get(ctx, key); errors.Is(err, ErrNotFound) {
				return agentWriteReply{}
			} else if err == nil {
				rev = e.Revision
			}
		}
		if err == nil {
			err = b.Delete(ctx, key, rev)
		}
	}
	switch {
	case errors.Is(err, ErrRevision):
		return agentWriteReply{Code: "revision", Error: "the key changed since it was read"}
	case err != nil:
		s.Logger.Warn("agent write", "clinic_id", clinic, "bucket", bucket, "err", err.Error())
		return agentWriteReply{Code: "unavailable", Error: "the relay could not write; try again"}
	}
	return agentWriteReply{Revision: nrev}
}

// agentAuditActions are the events an agent records of its own; it also
// records its staff's (services.IsStaffAction), which name the user.
var agentAuditActions = map[string]bool{
	services.AuditRequestOpened: true, services.AuditRequestDelivered: true,
	services.AuditOutcomeSet: true, services.AuditChangeApplied: true, services.AuditIntakeDelivered: true,
	services.AuditPortalChecked: true, services.AuditPortalDetails: true,
}

func (s *AgentWrites) handleAudit(m *nats.Msg) {
	clinic := strings.Split(m.Subject, ".")[2]
	respond(m, s.audit(clinic, m.Data))
}

func (s *AgentWrites) audit(clinic string, body []byte) agentWriteReply {
	if subjects.ValidClinicID(clinic) != nil || !s.Active(clinic) {
		return refused("no active clinic %s", clinic)
	}
	var ev services.AuditEvent
	switch err := strictJSON(body, &ev); {
	case err != nil || len(body) > MaxSmallBytes:
		return refused("audit: an event is a JSON object of at most %d bytes", MaxSmallBytes)
	case !agentAuditActions[ev.Action] && !services.IsStaffAction(ev.Action):
		return refused("audit: an agent records no %q events", ev.Action)
	case ev.RequestID != "" && subjects.ValidRequestID(ev.RequestID) != nil:
		return refused("audit: %s", subjects.ValidRequestID(ev.RequestID))
	case services.IsStaffAction(ev.Action) != (ev.User != ""):
		return refused("audit: a user names who acted in %q events, and only in those", ev.Action)
	case ev.User != "" && services.CheckStaffName(ev.User) != nil:
		return refused("audit: user: %s", services.CheckStaffName(ev.User))
	}
	if err := services.PlainText("audit: detail", ev.Detail, 200); err != nil {
		return refused("%s", err)
	}
	if !s.limiter(&s.audits, clinic, AgentAuditRate, AgentAuditBurst).Allow() {
		return refused("audit: more than %d events a second from this clinic", AgentAuditRate)
	}
	// The relay says who and when: the clinic of the subject, the agent
	// (or its staff, whose name only the clinic can vouch for).
	ev.Clinic, ev.Actor, ev.IP = clinic, "agent", ""
	if ev.User != "" {
		ev.Actor = "staff"
	}
	if now := s.Now().UTC(); ev.At.IsZero() || ev.At.After(now) {
		ev.At = now
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := (&Auditor{JS: s.JS}).AuditNow(ctx, ev); err != nil {
		s.Logger.Warn("agent audit", "clinic_id", clinic, "err", err.Error())
		return agentWriteReply{Code: "unavailable", Error: "the relay could not record the event; try again"}
	}
	return agentWriteReply{}
}

// limiter is clinic's limiter in *m, made with r and burst the first time.
func (s *AgentWrites) limiter(m *map[string]*rate.Limiter, clinic string, r rate.Limit, burst int) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *m == nil {
		*m = map[string]*rate.Limiter{}
	}
	l, ok := (*m)[clinic]
	if !ok {
		l = rate.NewLimiter(r, burst)
		(*m)[clinic] = l
	}
	return l
}

// ErrRefused is an agent write the relay refused: it breaks a rule that
// trying again does not change (the error says which).
var ErrRefused = errors.New("the relay refused")

// NewAgentBucket is an agent's bucket: reads through the keys' subjects,
// writes through the relay (subjects.AgentWrite). Its keys must be under
// clinic.
func NewAgentBucket(js jetstream.JetStream, name, clinic string) *Bucket {
	b := NewBucket(js, name)
	b.writer = func(ctx context.Context, bucket string, w write) (uint64, error) {
		suffix, ok := strings.CutPrefix(w.key, clinic+".")
		if !ok {
			return 0, fmt.Errorf("%w: key %q is not under clinic %s", ErrRefused, w.key, clinic)
		}
		// Refused here, not sent: past subjects.AgentMaxPayload the server
		// would close the agent's connection.
		if msg := agentKeys[bucket].oversize(bucket, len(w.value)); msg != "" {
			return 0, fmt.Errorf("%w %s: %s", ErrRefused, w.key, msg)
		}
		m := nats.NewMsg(subjects.AgentWrite(clinic, bucket, suffix))
		m.Data = w.value
		switch {
		case w.del:
			m.Header.Set(subjects.HeaderOp, OpDelete)
		case w.rev == 0:
			m.Header.Set(subjects.HeaderOp, OpCreate)
		case w.rev > 0:
			m.Header.Set(subjects.HeaderOp, OpUpdate)
		default:
			m.Header.Set(subjects.HeaderOp, OpPut)
		}
		if w.rev > 0 {
			m.Header.Set(subjects.HeaderRevision, strconv.FormatInt(w.rev, 10))
		}
		return askRelay(ctx, js.Conn(), m, w.key)
	}
	return b
}

// askRelay sends an agent's write or event and reads the relay's answer.
func askRelay(ctx context.Context, nc *nats.Conn, m *nats.Msg, what string) (uint64, error) {
	resp, err := nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", what, err)
	}
	var r agentWriteReply
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return 0, fmt.Errorf("write %s: the relay's answer: %w", what, err)
	}
	switch r.Code {
	case "":
		return r.Revision, nil
	case "revision":
		return 0, ErrRevision
	case "refused":
		return 0, fmt.Errorf("%w %s: %s", ErrRefused, what, r.Error)
	}
	return 0, fmt.Errorf("write %s: %s", what, r.Error)
}

// AgentAuditor is an agent's services.Auditor: it sends events to the relay
// (subjects.AgentAudit) in order, from a queue, without blocking the
// caller; an event the relay refused or never answered is logged.
type AgentAuditor struct {
	nc     *nats.Conn
	clinic string
	log    *slog.Logger
	queue  chan services.AuditEvent
	done   chan struct{}

	mu     sync.Mutex
	closed bool // after Close, events are logged as lost
}

var _ services.Auditor = (*AgentAuditor)(nil)

// agentAuditQueue is how many events wait for the relay before new ones are
// dropped (and logged).
const agentAuditQueue = 10_000

// NewAgentAuditor starts the auditor of clinic's agent on nc; Close stops it.
func NewAgentAuditor(nc *nats.Conn, clinic string, log *slog.Logger) *AgentAuditor {
	a := &AgentAuditor{nc: nc, clinic: clinic, log: log, queue: make(chan services.AuditEvent, agentAuditQueue),
		done: make(chan struct{})}
	go a.run()
	return a
}

// Audit queues ev for the relay; safe after Close, which it outlives (a
// connector's staff may still act while the agent stops).
func (a *AgentAuditor) Audit(_ context.Context, ev services.AuditEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		a.lost(ev, errors.New("the agent has stopped"))
		return
	}
	select {
	case a.queue <- ev:
	default:
		a.lost(ev, errors.New("too many events waiting for the relay"))
	}
}

func (a *AgentAuditor) run() {
	defer close(a.done)
	for ev := range a.queue {
		b, _ := json.Marshal(ev)
		var err error
		for wait := 100 * time.Millisecond; ; wait *= 2 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			m := &nats.Msg{Subject: subjects.AgentAudit(a.clinic), Data: b}
			_, err = askRelay(ctx, a.nc, m, "audit event")
			cancel()
			// Refused: trying again changes nothing. Otherwise the relay
			// is away for a moment; a closed connection ends it.
			if err == nil || errors.Is(err, ErrRefused) || a.nc.IsClosed() || wait > 5*time.Second {
				break
			}
			time.Sleep(wait)
		}
		if err != nil {
			a.lost(ev, err)
		}
	}
}

// Close sends the events still queued, waiting at most d.
func (a *AgentAuditor) Close(d time.Duration) {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.queue)
	}
	a.mu.Unlock()
	select {
	case <-a.done:
	case <-time.After(d):
	}
}

func (a *AgentAuditor) lost(ev services.AuditEvent, err error) {
	a.log.Error("audit event lost", "clinic_id", ev.Clinic, "action", ev.Action, "request_id", ev.RequestID,
		"err", err.Error())
}
