// Package integration runs clinicrelay end to end: an embedded NATS with
// JetStream on a random port and a temp dir, the web front on :0, and real
// agents dialling in over TCP with their own creds.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/clinicrelay/clinicrelay/agent"
	"github.com/clinicrelay/clinicrelay/agent/connector"
	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/agent/console/staff"
	"github.com/clinicrelay/clinicrelay/jetstream/auth"
	"github.com/clinicrelay/clinicrelay/jetstream/clinics"
	"github.com/clinicrelay/clinicrelay/relay"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/web"
)

// Env is one relay with its data dir.
type Env struct {
	t       *testing.T
	Relay   *relay.Relay
	DataDir string
	Admin   *clinics.Admin
	ctx     context.Context
	// AgentNow, when set, is the clock of the agents started after.
	AgentNow func() time.Time
}

// phi is every patient value the tests send; none may reach a log.
var phi = []string{"Ada Patient", "ada@example.org", "416 555 0100", "sore knee", "1980-04-02",
	"Bo Patient", "bo@example.org", "416-555-0101", "1990-01-01"}

// logSink keeps everything logged during a test, at debug level, to check
// for PHI at the end; warnings and errors also go to the test output.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String is everything written so far.
func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

var sinks sync.Map // *testing.T -> *logSink

func testLogger(t *testing.T) *slog.Logger {
	sink, loaded := sinks.LoadOrStore(t, &logSink{})
	ls := sink.(*logSink)
	if !loaded {
		t.Cleanup(func() {
			sinks.Delete(t)
			ls.mu.Lock()
			defer ls.mu.Unlock()
			for _, v := range phi {
				if bytes.Contains(ls.buf.Bytes(), []byte(v)) {
					t.Errorf("patient data %q in the logs", v)
				}
			}
		})
	}
	return slog.New(slog.NewMultiHandler(
		slog.NewTextHandler(ls, &slog.HandlerOptions{Level: slog.LevelDebug}),
		slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}),
	))
}

// logged is everything the test logged so far.
func logged(t *testing.T) string {
	testLogger(t)
	sink, _ := sinks.Load(t)
	return sink.(*logSink).String()
}

// NewEnv starts a relay on random ports; it stops at the end of the test.
func NewEnv(t *testing.T) *Env {
	t.Helper()
	dir := t.TempDir()
	r := startRelay(t, relay.Config{DataDir: dir, NATSListen: "127.0.0.1:0", AckWait: time.Second})
	ctx := t.Context()
	a, err := r.Admin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{t: t, Relay: r, DataDir: dir, Admin: a, ctx: ctx}
}

// startRelay runs a relay in this process with cfg (embedded, or on an
// existing NATS with cfg.NATSURL), its web front on a random port; it stops
// at the end of the test.
func startRelay(t *testing.T, cfg relay.Config) *relay.Relay {
	t.Helper()
	cfg.HTTPAddr, cfg.Logger = "127.0.0.1:0", testLogger(t)
	if cfg.Abuse.Limits == (web.Limits{}) && cfg.Abuse.MaxPending == 0 {
		// Tests post as one patient from one IP: no abuse limits unless
		// the test sets them (abuse_test.go, holds_test.go).
		cfg.Abuse.Off = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	r, err := relay.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; r.Shutdown() })
	return r
}

// MustAddClinic onboards a clinic and returns its agent's creds.
func (e *Env) MustAddClinic(id string) []byte {
	e.t.Helper()
	creds, err := e.Admin.Add(e.ctx, services.Clinic{ID: id, Name: "Clinic " + id, TimeZone: "America/Toronto"})
	if err != nil {
		e.t.Fatal(err)
	}
	return creds
}

// testSettleWait is how long the tests' agents take again a request with no
// status before dropping it (agent.Config.SettleWait).
const testSettleWait = 5 * time.Second

// Agent is a running clinic agent with its console served by httptest.
type Agent struct {
	Console *console.Console
	HTTP    *httptest.Server
	cancel  context.CancelFunc
	done    chan struct{}
	dialer  *killDialer
}

// deskPassword is the front-desk admin's password in every test.
const deskPassword = "maple front desk 2026"

// Desk is a client of the agent's console signed in as an admin.
func (a *Agent) Desk(t *testing.T) *Client {
	t.Helper()
	if a.Console == nil {
		t.Fatal("this agent has no console")
	}
	if err := a.Console.Staff().Put("desk-admin", staff.RoleAdmin, nil, deskPassword); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, a.HTTP.URL)
	if code := c.JSON("POST", "/api/session", map[string]string{"name": "desk-admin", "password": deskPassword}, nil); code != 200 {
		t.Fatalf("desk sign-in: %d", code)
	}
	return c
}

// killDialer records the agent's TCP connections so a test can cut them,
// as a crash or a pulled cable would.
type killDialer struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (d *killDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err == nil {
		d.mu.Lock()
		d.conns = append(d.conns, c)
		d.mu.Unlock()
	}
	return c, err
}

func (d *killDialer) Kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
}

// MustStartAgent runs an agent for creds on conn (a fresh console if nil).
func (e *Env) MustStartAgent(creds []byte, conn connector.Connector, con *console.Console) *Agent {
	e.t.Helper()
	if con == nil {
		con = openDemoConsole(e.t, console.Config{})
	}
	if conn == nil {
		conn = con
	}
	d := &killDialer{}
	ag, err := agent.New(agent.Config{NATSURL: e.Relay.NATSURL(), Creds: creds, Logger: testLogger(e.t),
		SealKey:   agentSealKey(e.t, creds),
		SyncEvery: 200 * time.Millisecond, HeartbeatEvery: time.Second, CheckEvery: time.Second, SettleWait: testSettleWait,
		NATSOptions: []nats.Option{nats.SetCustomDialer(d)}, Now: e.AgentNow}, conn)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{Console: con, HTTP: httptest.NewServer(con.Handler()), cancel: cancel, done: make(chan struct{}), dialer: d}
	go func() { ag.Run(ctx); close(a.done) }()
	e.t.Cleanup(a.Stop)
	return a
}

var sealKeys sync.Map // test name + "/" + clinic -> nkeys.KeyPair

// agentSealKey is the seal key of the creds' clinic in this test: the same
// for every agent the test starts for it, as a restarted agent reads the
// key file it made.
func agentSealKey(t *testing.T, creds []byte) nkeys.KeyPair {
	t.Helper()
	clinic, err := auth.CredsClinic(creds)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	k, _ := sealKeys.LoadOrStore(t.Name()+"/"+clinic, kp)
	return k.(nkeys.KeyPair)
}

// openDemoConsole opens a console store in a temp dir with the demo
// providers; cfg may set more (its Path, Addr and Logger are set here).
func openDemoConsole(t *testing.T, cfg console.Config) *console.Console {
	t.Helper()
	cfg.Path, cfg.Addr, cfg.Logger = t.TempDir()+"/console.db", "127.0.0.1:0", testLogger(t)
	con, err := console.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { con.Close() })
	if err := con.SeedDemo(context.Background()); err != nil {
		t.Fatal(err)
	}
	return con
}

// Stop stops the agent and waits for it.
func (a *Agent) Stop() {
	a.cancel()
	<-a.done
	a.HTTP.Close()
}

// Client is an HTTP client with a cookie jar that does not follow redirects.
type Client struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newClient(t *testing.T, base string) *Client {
	jar, _ := cookiejar.New(nil)
	return &Client{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// Do sends a request and returns status, headers and body.
func (c *Client) Do(method, path, contentType string, body io.Reader) (int, http.Header, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// JSON sends v as JSON (or a raw string) and decodes the answer into out.
func (c *Client) JSON(method, path string, v any, out any) int {
	c.t.Helper()
	var body io.Reader
	switch v := v.(type) {
	case nil:
	case string:
		body = strings.NewReader(v)
	default:
		b, _ := json.Marshal(v)
		body = bytes.NewReader(b)
	}
	code, _, resp := c.Do(method, path, "application/json", body)
	if out != nil && resp != "" {
		if err := json.Unmarshal([]byte(resp), out); err != nil {
			c.t.Fatalf("%s %s: %d %q is not JSON: %v", method, path, code, resp, err)
		}
	}
	return code
}

type slotsResp struct {
	Slots []struct {
		ID         string    `json:"id"`
		ProviderID string    `json:"provider_id"`
		Start      time.Time `json:"start"`
	} `json:"slots"`
}

type statusResp struct {
	ID    string `json:"id"`
	State string `json:"state"`
}
