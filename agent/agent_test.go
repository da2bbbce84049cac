package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/clinicrelay/clinicrelay/agent"
	"github.com/clinicrelay/clinicrelay/agent/connector/connectortest"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/jetstream/auth"
	"github.com/clinicrelay/clinicrelay/relay"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// The agent's core on the in-memory connector, against a real relay (its
// embedded NATS, its web front): how a request, a decision and a patient's
// change move through the lifecycle (services/lifecycle.go).

// rig is one relay, one clinic and its agent on a Memory connector.
type rig struct {
	t     *testing.T
	relay *relay.Relay
	mem   *connectortest.Memory
	slots []services.Slot
	gate  *gatedApply
	cfg   agent.Config
	// stopAgent stops the agent newRig started.
	stopAgent func()
	// dataDir is the relay's.
	dataDir string
}

// startAgent runs the clinic's agent on the rig's connector; the returned
// func stops it (so does the test's end).
func (rg *rig) startAgent() (stop func()) {
	rg.t.Helper()
	ag, err := agent.New(rg.cfg, rg.gate)
	if err != nil {
		rg.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { ag.Run(ctx); close(ran) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-ran }) }
	rg.t.Cleanup(stop)
	return stop
}

// operator is a JetStream handle with the relay's operator creds, which
// reach every bucket and stream.
func (rg *rig) operator() jetstream.JetStream {
	rg.t.Helper()
	keys, err := auth.Open(filepath.Join(rg.dataDir, "auth"))
	if err != nil {
		rg.t.Fatal(err)
	}
	creds, err := keys.UserCreds("operator", nil, false)
	if err != nil {
		rg.t.Fatal(err)
	}
	co, err := auth.CredsOption(creds)
	if err != nil {
		rg.t.Fatal(err)
	}
	nc, err := nats.Connect(rg.relay.NATSURL(), co)
	if err != nil {
		rg.t.Fatal(err)
	}
	rg.t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	return js
}

// gatedApply is the Memory connector whose Apply waits while the gate is
// shut: a patient's change stuck on its way to the clinic's system.
type gatedApply struct {
	*connectortest.Memory
	mu   sync.Mutex
	shut chan struct{}
}

func (g *gatedApply) Apply(ctx context.Context, ch services.Change) error {
	g.mu.Lock()
	shut := g.shut
	g.mu.Unlock()
	if shut != nil {
		select {
		case <-shut:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Memory.Apply(ctx, ch)
}

func (g *gatedApply) close() {
	g.mu.Lock()
	g.shut = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedApply) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.shut)
	g.shut = nil
}

func newRig(t *testing.T) *rig {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background())
	cfg := relay.Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: log,
		AckWait: time.Second}
	cfg.Abuse.Off = true
	r, err := relay.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { r.Serve(ctx); close(served) }()
	t.Cleanup(func() { cancel(); <-served; r.Shutdown() })
	admin, err := r.Admin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := admin.Add(ctx, services.Clinic{ID: "maple", Name: "Maple", TimeZone: "America/Toronto"})
	if err != nil {
		t.Fatal(err)
	}
	loc, _ := time.LoadLocation("America/Toronto")
	tomorrow := services.Today(time.Now(), loc).AddDate(0, 0, 1)
	var slots []services.Slot
	for i := range 3 {
		start := time.Date(tomorrow.Year(), tomorrow.Month(), tomorrow.Day(), 9+i, 0, 0, 0, loc)
		slots = append(slots, services.Slot{ID: services.SlotID("dr-lee", start), ProviderID: "dr-lee",
			Start: start.UTC(), End: start.Add(30 * time.Minute).UTC()})
	}
	mem := connectortest.NewMemory([]services.Provider{{ID: "dr-lee", Name: "Dr. Lee"}}, slots)
	seal, _ := nkeys.CreateCurveKeys()
	rg := &rig{t: t, relay: r, mem: mem, slots: slots, gate: &gatedApply{Memory: mem}, dataDir: cfg.DataDir,
		cfg: agent.Config{NATSURL: r.NATSURL(), Creds: creds, Logger: log, SealKey: seal,
			SyncEvery: 100 * time.Millisecond, HeartbeatEvery: time.Second, CheckEvery: time.Second}}
	rg.stopAgent = rg.startAgent()
	poll.For(t, 10*time.Second, func() error {
		if got := rg.offered(); len(got) != len(slots) {
			return fmt.Errorf("offered %v, want the %d slots", got, len(slots))
		}
		return nil
	})
	return rg
}

// call sends v to the web front's API and decodes the answer into out.
func (rg *rig) call(method, path string, v, out any) int {
	rg.t.Helper()
	var body io.Reader
	if v != nil {
		b, _ := json.Marshal(v)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, rg.relay.HTTPURL()+path, body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rg.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// offered is the slot IDs the web front offers.
func (rg *rig) offered() []string {
	var got struct {
		Slots []struct {
			ID string `json:"id"`
		} `json:"slots"`
	}
	rg.call("GET", "/api/v1/clinics/maple/slots", nil, &got)
	var ids []string
	for _, s := range got.Slots {
		ids = append(ids, s.ID)
	}
	return ids
}

// book requests slot as a patient would and returns the status token.
func (rg *rig) book(slot string) string {
	rg.t.Helper()
	var out struct {
		Token string `json:"token"`
	}
	if code := rg.call("POST", "/api/v1/clinics/maple/requests", map[string]any{"slot_id": slot,
		"name": "Ada Patient", "birth_date": "1980-04-02", "phone": "+1 416 555 0100",
		"email": "ada@example.org", "reason": "sore knee"}, &out); code != http.StatusCreated {
		rg.t.Fatalf("request: %d", code)
	}
	return out.Token
}

type apiStatus struct {
	ID    string         `json:"id"`
	State services.State `json:"state"`
	Slot  struct {
		ID string `json:"id"`
	} `json:"slot"`
}

func (rg *rig) status(token string) apiStatus {
	rg.t.Helper()
	var st apiStatus
	if code := rg.call("GET", "/api/v1/requests/"+token, nil, &st); code != http.StatusOK {
		rg.t.Fatalf("status: %d", code)
	}
	return st
}

func (rg *rig) awaitState(token string, want services.State) apiStatus {
	rg.t.Helper()
	var st apiStatus
	poll.For(rg.t, 10*time.Second, func() error {
		if st = rg.status(token); st.State != want {
			return fmt.Errorf("state %s, want %s", st.State, want)
		}
		return nil
	})
	return st
}

// TestAgent_Request: a request reaches the connector once, its status reads
// delivered, and its slot is offered no more; the staff's decision reaches
// the patient.
func TestAgent_Request(t *testing.T) {
	rg := newRig(t)
	tok := rg.book(rg.slots[0].ID)
	st := rg.awaitState(tok, services.StateDelivered)
	if got := rg.mem.Stored(); len(got) != 1 || got[0] != st.ID {
		t.Fatalf("stored %v, want the one request %s", got, st.ID)
	}
	poll.For(t, 5*time.Second, func() error {
		if got := rg.offered(); slices.Contains(got, rg.slots[0].ID) {
			return fmt.Errorf("the requested slot is still offered: %v", got)
		}
		return nil
	})
	if err := rg.mem.Book(t.Context(), st.ID); err != nil {
		t.Fatal(err)
	}
	rg.awaitState(tok, services.StateBooked)
	poll.For(t, 5*time.Second, func() error {
		if outs, _ := rg.mem.PendingOutcomes(t.Context()); len(outs) != 0 {
			return fmt.Errorf("%d outcomes still pending after publication", len(outs))
		}
		return nil
	})
}

// TestAgent_OutcomeHeldBackForChange: while a patient's new time is on its
// way to the clinic's system, a decision the staff make on the old time is
// held back, not written over the patient's change; the change's own answer
// is published once it is applied.
func TestAgent_OutcomeHeldBackForChange(t *testing.T) {
	rg := newRig(t)
	tok := rg.book(rg.slots[0].ID)
	st := rg.awaitState(tok, services.StateDelivered)
	rg.gate.close()
	if code := rg.call("POST", "/api/v1/requests/"+tok+"/reschedule",
		map[string]string{"slot_id": rg.slots[1].ID}, nil); code != http.StatusOK {
		t.Fatalf("reschedule: %d", code)
	}
	if got := rg.status(tok); got.State != services.StateReceived || got.Slot.ID != rg.slots[1].ID {
		t.Fatalf("after the reschedule: %+v, want received on the new time", got)
	}
	if err := rg.mem.Book(t.Context(), st.ID); err != nil { // the old time, before the change reached it
		t.Fatal(err)
	}
	poll.Still(t, time.Second, func() error {
		if got := rg.status(tok); got.State != services.StateReceived || got.Slot.ID != rg.slots[1].ID {
			return fmt.Errorf("the patient's change was overwritten: %+v", got)
		}
		return nil
	})
	rg.gate.open()
	got := rg.awaitState(tok, services.StateDelivered)
	if got.Slot.ID != rg.slots[1].ID {
		t.Errorf("answered on %s, want the new time %s", got.Slot.ID, rg.slots[1].ID)
	}
	poll.For(t, 5*time.Second, func() error {
		if offered := rg.offered(); !slices.Contains(offered, rg.slots[0].ID) || slices.Contains(offered, rg.slots[1].ID) {
			return fmt.Errorf("offered %v, want the old time back and the new one taken", offered)
		}
		return nil
	})
}

// TestAgent_Cancel: a patient's cancellation reaches the clinic's system,
// which frees the slot; the status stays cancelled, and the clinic's answer
// (cancelled too) is not written again.
func TestAgent_Cancel(t *testing.T) {
	rg := newRig(t)
	tok := rg.book(rg.slots[0].ID)
	rg.awaitState(tok, services.StateDelivered)
	if code := rg.call("POST", "/api/v1/requests/"+tok+"/cancel", nil, nil); code != http.StatusOK {
		t.Fatalf("cancel: %d", code)
	}
	poll.For(t, 5*time.Second, func() error {
		if !slices.Contains(rg.offered(), rg.slots[0].ID) {
			return fmt.Errorf("the cancelled time is not offered again")
		}
		if outs, _ := rg.mem.PendingOutcomes(t.Context()); len(outs) != 0 {
			return fmt.Errorf("the cancellation's answer is still pending")
		}
		return nil
	})
	if got := rg.status(tok); got.State != services.StateCancelled {
		t.Errorf("state %s after the clinic applied the cancellation", got.State)
	}
	if err := rg.mem.Book(t.Context(), rg.status(tok).ID); services.ErrorCode(err) != services.EConflict {
		t.Errorf("booking a cancelled request in the connector: %v, want EConflict", err)
	}
}

// TestAgent_FailedBookingDropped: a request whose status is not there is
// taken again for a while (the relay writes the two together), then dropped
// unstored: its booking failed, and its patient was told so.
func TestAgent_FailedBookingDropped(t *testing.T) {
	rg := newRig(t)
	rg.stopAgent() // the request waits in the queue
	tok := rg.book(rg.slots[0].ID)
	_, id, _ := services.ParseStatusToken(tok)
	js := rg.operator()
	kv, err := js.KeyValue(t.Context(), subjects.BucketStatus)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(t.Context(), subjects.StatusKey("maple", id)); err != nil { // as the relay's undo does
		t.Fatal(err)
	}
	rg.cfg.SettleWait = time.Second
	rg.startAgent()
	poll.For(t, 10*time.Second, func() error {
		s, err := js.Stream(t.Context(), subjects.StreamRequests)
		if err != nil {
			return err
		}
		if n := s.CachedInfo().State.Msgs; n != 0 {
			return fmt.Errorf("%d requests still queued", n)
		}
		return nil
	})
	if got := rg.mem.Stored(); len(got) != 0 {
		t.Errorf("the connector stored %v, a request whose booking failed", got)
	}
}

// TestAgent_IntakeKind: a message kind is one entry of the agent's table and
// one connector role. An intake form (the web front does not send them yet)
// is opened in the one envelope, waits for its request, reaches a connector
// that takes intakes, and leaves the queue; one sealed to the request of
// another clinic is refused.
func TestAgent_IntakeKind(t *testing.T) {
	rg := newRig(t)
	js := rg.operator()
	pub, _ := rg.cfg.SealKey.PublicKey()
	var sealer services.Sealer
	send := func(in services.Intake) {
		t.Helper()
		sealed, err := sealer.Seal(in, pub)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(subjects.ClinicQueue("maple", subjects.KindIntake))
		m.Data = sealed.Box
		m.Header.Set(subjects.HeaderRequestID, in.RequestID)
		m.Header.Set(subjects.HeaderClinicID, "maple")
		m.Header.Set(subjects.HeaderSealedTo, sealed.To)
		m.Header.Set(subjects.HeaderSealedFrom, sealed.From)
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	tok := rg.book(rg.slots[0].ID)
	_, id, _ := services.ParseStatusToken(tok)
	send(services.Intake{ID: services.RequestIDFor("intake-1"), RequestID: id, ClinicID: "maple",
		Answers: map[string]string{"allergies": "none"}})
	send(services.Intake{ID: services.RequestIDFor("intake-2"), RequestID: id, ClinicID: "other"}) // refused
	poll.For(t, 10*time.Second, func() error {
		s, err := js.Stream(t.Context(), subjects.StreamRequests)
		if err != nil {
			return err
		}
		if got := rg.mem.Intakes(); len(got) != 1 || got[0].Answers["allergies"] != "none" {
			return fmt.Errorf("intakes stored: %+v", got)
		}
		if n := s.CachedInfo().State.Msgs; n != 0 {
			return fmt.Errorf("%d messages still queued", n)
		}
		return nil
	})
}
