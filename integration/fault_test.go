package integration

// The fault suite's kit: agents that can crash, a dense schedule, a load of
// patients posting requests, and readers of what reached the clinic. The
// cases are in fault_*_test.go; every one runs on loopback ports and temp
// dirs, is bounded in time and cleans up after itself.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/agent"
	"github.com/clinicrelay/clinicrelay/agent/connector"
	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// denseSchedule is two providers with 5-minute slots all day, every day:
// 576 slots a day, enough for a thousand distinct requests within a week.
func denseSchedule() []services.ProviderSchedule {
	day := []services.Interval{{Start: "00:00", End: "23:55"}}
	hours := map[string][]services.Interval{}
	for _, d := range []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"} {
		hours[d] = day
	}
	return []services.ProviderSchedule{
		{Provider: services.Provider{ID: "dr-a", Name: "Dr. A"}, SlotMinutes: 5, Hours: hours, Closures: []string{}},
		{Provider: services.Provider{ID: "dr-b", Name: "Dr. B"}, SlotMinutes: 5, Hours: hours, Closures: []string{}},
	}
}

// openDenseConsole opens a console store in a temp dir with denseSchedule.
func openDenseConsole(t *testing.T) *console.Console {
	t.Helper()
	con, err := console.Open(console.Config{Path: t.TempDir() + "/console.db", Addr: "127.0.0.1:0", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { con.Close() })
	if err := con.SetProviders(context.Background(), denseSchedule()); err != nil {
		t.Fatal(err)
	}
	return con
}

// crashDialer is the agent's TCP dialer; Crash cuts its connections and
// refuses new ones, as a killed process would.
type crashDialer struct {
	mu    sync.Mutex
	conns []net.Conn
	dead  bool
}

func (d *crashDialer) Dial(network, address string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return nil, errors.New("agent crashed")
	}
	c, err := net.Dial(network, address)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *crashDialer) Crash() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead = true
	for _, c := range d.conns {
		c.Close()
	}
}

// faultAgent is an agent run against any NATS URL.
type faultAgent struct {
	cancel context.CancelFunc
	done   chan struct{}
	dialer *crashDialer
}

// startAgent runs an agent for creds on conn, dialling url; it publishes a
// week ahead (the relay sets how long it has to ack).
//
// A request whose booking never finished (the relay was killed between its
// publish and its status) is dropped after testSettleWait, not the minute an
// agent waits by default, so a test sees REQUESTS drain in time.
func startAgent(t *testing.T, url string, creds []byte, conn connector.Connector) *faultAgent {
	t.Helper()
	d := &crashDialer{}
	ag, err := agent.New(agent.Config{NATSURL: url, Creds: creds, Logger: testLogger(t), Days: 7, SealKey: agentSealKey(t, creds),
		SyncEvery: 200 * time.Millisecond, HeartbeatEvery: time.Second, SettleWait: testSettleWait,
		NATSOptions: []nats.Option{nats.SetCustomDialer(d)}}, conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &faultAgent{cancel: cancel, done: make(chan struct{}), dialer: d}
	go func() { ag.Run(ctx); close(a.done) }()
	t.Cleanup(func() { a.stop(t) })
	return a
}

// stop cancels the agent and waits for it, at most 15s.
func (a *faultAgent) stop(t *testing.T) {
	t.Helper()
	a.cancel()
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		t.Error("agent did not stop within 15s")
	}
}

// crash kills the agent abruptly: its connections are cut first, so nothing
// in flight is acked or nacked, then it is cancelled without a drain.
func (a *faultAgent) crash(t *testing.T) {
	t.Helper()
	a.dialer.Crash()
	a.stop(t)
}

// countingConnector counts Store calls by request ID. Once hangAfter stores
// have returned (when hangAfter > 0), each later Store stores the request and
// then hangs until its context ends: the clinic has it, the relay never
// hears so, as when an agent is killed between its store and its ack.
type countingConnector struct {
	connector.Connector
	hangAfter int

	mu     sync.Mutex
	calls  map[string]int
	stored int
	hung   chan struct{} // closed at the first hang
}

func newCountingConnector(conn connector.Connector, hangAfter int) *countingConnector {
	return &countingConnector{Connector: conn, hangAfter: hangAfter, calls: map[string]int{}, hung: make(chan struct{})}
}

func (c *countingConnector) Store(ctx context.Context, req services.Request) error {
	c.mu.Lock()
	c.calls[req.ID]++
	c.mu.Unlock()
	if err := c.Connector.Store(ctx, req); err != nil {
		return err
	}
	c.mu.Lock()
	hang := c.hangAfter > 0 && c.stored >= c.hangAfter
	if hang {
		select {
		case <-c.hung:
		default:
			close(c.hung)
		}
	} else {
		c.stored++
	}
	c.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// Calls is how many Store calls there were, and for how many IDs.
func (c *countingConnector) Calls() (calls, ids int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.calls {
		calls += n
	}
	return calls, len(c.calls)
}

// consoleIDs counts the console's stored requests by ID.
func consoleIDs(t *testing.T, con *console.Console) map[string]int {
	t.Helper()
	all, err := con.Requests(context.Background(), console.StatusAll)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, e := range all {
		ids[e.ID]++
	}
	return ids
}

// checkExactlyOnce fails unless every ID of want is stored exactly once in
// got, and returns how many IDs got holds besides.
func checkExactlyOnce(t *testing.T, got map[string]int, want map[string]string) (extra int) {
	t.Helper()
	missing, dup := 0, 0
	for id := range want {
		switch got[id] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
	}
	for id, n := range got {
		if _, ok := want[id]; !ok {
			extra++
			if n > 1 {
				dup++
			}
		}
	}
	if missing > 0 || dup > 0 {
		t.Errorf("of %d accepted requests, %d missing and %d stored more than once", len(want), missing, dup)
	}
	return extra
}

// awaitDrained waits until REQUESTS holds no message.
func awaitDrained(t *testing.T, js jetstream.JetStream, timeout time.Duration) {
	t.Helper()
	stream, err := js.Stream(context.Background(), subjects.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	poll.For(t, timeout, func() error {
		info, err := stream.Info(context.Background())
		if err != nil {
			return err
		}
		if info.State.Msgs != 0 {
			return fmt.Errorf("%d requests still in %s", info.State.Msgs, subjects.StreamRequests)
		}
		return nil
	})
}

// slotIDs lists the clinic's free slots on the local dates [from, from+days).
func slotIDs(t *testing.T, c *Client, clinic string, from time.Time, days int) []string {
	t.Helper()
	var got slotsResp
	path := "/api/v1/clinics/" + clinic + "/slots?from=" + from.Format(time.DateOnly) + "&to=" +
		from.AddDate(0, 0, days-1).Format(time.DateOnly)
	if code := c.JSON("GET", path, nil, &got); code != 200 {
		t.Fatalf("slots: %d", code)
	}
	var ids []string
	for _, s := range got.Slots {
		ids = append(ids, s.ID)
	}
	return ids
}

// awaitSlots waits until the web offers at least n slots of the clinic in
// the week from today, and returns them.
func awaitSlots(t *testing.T, c *Client, clinic string, n int) []string {
	t.Helper()
	var ids []string
	poll.For(t, 15*time.Second, func() error {
		ids = slotIDs(t, c, clinic, time.Now(), 7)
		if len(ids) < n {
			return fmt.Errorf("%d slots offered, want %d", len(ids), n)
		}
		return nil
	})
	return ids
}

// awaitStates polls every token's status until all are in state want.
func awaitStates(t *testing.T, c *Client, tokens map[string]string, want services.State, timeout time.Duration) {
	t.Helper()
	left := map[string]bool{}
	for _, tok := range tokens {
		left[tok] = true
	}
	poll.For(t, timeout, func() error {
		for tok := range left {
			var st statusResp
			if code := c.JSON("GET", "/api/v1/requests/"+tok, nil, &st); code == 200 && services.State(st.State) == want {
				delete(left, tok)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("%d of %d requests not %s yet", len(left), len(tokens), want)
		}
		return nil
	})
}

// freeAddr is a loopback address with a port free a moment ago, for a
// server that must come back on the same address.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// splitAddr splits host:port.
func splitAddr(t *testing.T, addr string) (string, int) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return host, p
}
