package integration

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/jetstream/auth"
	"github.com/clinicrelay/clinicrelay/jetstream/clinics"
	"github.com/clinicrelay/clinicrelay/relay"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// connFlood is how many connections the flood tries with one clinic's creds,
// and how many at once.
const (
	connFlood       = 20_000
	connFloodAtOnce = 200
)

// TestConnFlood_OneClinic: 20,000 connections with one clinic's creds (it
// took every file handle and 1.5 GB, and JetStream failed its writes until a
// restart). The clinic keeps at most clinics.AgentMaxConns, its own agent
// among them; every other one is kicked; both clinics book throughout and
// after, with no restart.
func TestConnFlood_OneClinic(t *testing.T) {
	env := NewEnv(t)
	mapleCreds := env.MustAddClinic("maple")
	env.MustStartAgent(mapleCreds, nil, nil)
	env.MustStartAgent(env.MustAddClinic("birch"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	book := func(clinic string) {
		t.Helper()
		var created map[string]string
		if code := web.JSON("POST", "/api/v1/clinics/"+clinic+"/requests", validRequest(firstSlot(t, web, clinic)), &created); code != 201 {
			t.Fatalf("%s: create: %d", clinic, code)
		}
		awaitState(t, web, created["token"], "delivered")
	}
	book("maple")
	poll.For(t, 5*time.Second, func() error {
		if n := env.Relay.Warden.Conns("maple"); n != 1 {
			return fmt.Errorf("the warden counts %d connections of maple, want its agent's", n)
		}
		return nil
	})

	// A warden started later (a relay restarted on a cluster) counts the
	// connections already there.
	late := &clinics.Warden{Sys: env.Admin.Sys, Account: env.Relay.Node.Keys.AppPublicKey()}
	if err := late.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := late.Conns("maple"); n != 1 {
		t.Errorf("a warden started later counts %d connections of maple, want 1", n)
	}
	late.Stop()

	creds, err := auth.CredsOption(mapleCreds)
	if err != nil {
		t.Fatal(err)
	}
	var (
		kicked, refused atomic.Int64
		mu              sync.Mutex
		held            []*nats.Conn
		next            atomic.Int64
		wg              sync.WaitGroup
	)
	t0 := time.Now()
	for range connFloodAtOnce {
		wg.Go(func() {
			for next.Add(1) <= connFlood {
				closed := make(chan struct{})
				nc, err := nats.Connect(env.Relay.NATSURL(), creds, nats.NoReconnect(),
					nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
					nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
				if err != nil {
					refused.Add(1)
					continue
				}
				select {
				case <-closed:
					kicked.Add(1)
				case <-time.After(2 * time.Second):
					mu.Lock()
					held = append(held, nc)
					mu.Unlock()
				}
			}
		})
	}
	stop := make(chan struct{})
	bookedDuring := make(chan int)
	go func() { // the other clinic books while the flood goes on
		n := 0
		defer func() { bookedDuring <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			var created map[string]string
			if code := web.JSON("POST", "/api/v1/clinics/birch/requests", validRequest(firstSlot(t, web, "birch")), &created); code == 201 {
				n++
			}
		}
	}()
	wg.Wait()
	close(stop)
	took := time.Since(t0)
	t.Logf("%d connections tried in %s: %d kicked, %d refused, %d held; the warden kicked %d",
		connFlood, took.Round(time.Millisecond), kicked.Load(), refused.Load(), len(held), env.Relay.Warden.Kicked())
	if len(held) > clinics.AgentMaxConns-1 {
		t.Errorf("the flood holds %d connections; the clinic may have %d, its agent one of them", len(held), clinics.AgentMaxConns)
	}
	if n := <-bookedDuring; n == 0 {
		t.Error("birch booked nothing during the flood")
	}
	for _, nc := range held {
		nc.Close()
	}
	// Nothing needs a restart: both clinics book, maple's agent among them.
	book("maple")
	book("birch")
	if !strings.Contains(logged(t), `msg="agent connection refused: the clinic already has its connections" clinic_id=maple`) {
		t.Error("the relay did not log the refused connections")
	}
	// The operator's view: /metrics counts the kicks, and the relay is ready.
	_, _, metrics := web.Do("GET", "/metrics", "", nil)
	if !strings.Contains(metrics, fmt.Sprintf("clinicrelay_agent_connections_kicked_total %d\n", env.Relay.Warden.Kicked())) ||
		env.Relay.Warden.Kicked() < connFlood-clinics.AgentMaxConns || !strings.Contains(metrics, "clinicrelay_ready 1\n") {
		t.Errorf("/metrics after the flood:\n%s", metrics)
	}
}

// TestAgentLimits: each agent connection has at most
// subjects.AgentMaxSubs subscriptions and sends messages of at most
// subjects.AgentMaxPayload; past them the server refuses the subscription, or
// closes the connection, and the other clinic's agent goes on.
func TestAgentLimits(t *testing.T) {
	env := NewEnv(t)
	beta := env.MustAddClinic("beta")
	env.MustStartAgent(env.MustAddClinic("alpha"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	firstSlot(t, web, "alpha")

	var errs struct {
		sync.Mutex
		list []string
	}
	clinic, _ := auth.CredsClinic(beta)
	co, _ := auth.CredsOption(beta)
	nc, err := nats.Connect(env.Relay.NATSURL(), co, nats.CustomInboxPrefix(subjects.AgentInboxPrefix(clinic)),
		nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			errs.Lock()
			errs.list = append(errs.list, err.Error())
			errs.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	inbox := subjects.AgentInboxPrefix(clinic)
	for i := range subjects.AgentMaxSubs + 1 {
		if _, err := nc.Subscribe(fmt.Sprintf("%s.%d", inbox, i), func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
	}
	poll.For(t, 3*time.Second, func() error {
		errs.Lock()
		defer errs.Unlock()
		for _, e := range errs.list {
			if strings.Contains(strings.ToLower(e), "maximum subscriptions exceeded") {
				return nil
			}
		}
		return fmt.Errorf("no refused subscription among %q", errs.list)
	})

	// nats.go learns the limit from the server and refuses itself; a raw
	// client finds the server refusing too.
	if got := nc.MaxPayload(); got != subjects.AgentMaxPayload {
		t.Errorf("the server told the agent its largest message is %d bytes, want %d", got, subjects.AgentMaxPayload)
	}
	if reply := rawPublish(t, env.Relay.NATSURL(), beta,
		subjects.AgentWrite(clinic, subjects.BucketAvailability, time.Now().Format(time.DateOnly)),
		subjects.AgentMaxPayload+1); !strings.Contains(reply, "Maximum Payload Violation") {
		t.Errorf("a message past AgentMaxPayload: the server answered %q", reply)
	}
	if !hasSlotSoon(t, web, "alpha") {
		t.Error("alpha lost its slots")
	}
}

// hasSlotSoon reports whether the clinic offers any slot in the next two weeks.
func hasSlotSoon(t *testing.T, c *Client, clinic string) bool {
	t.Helper()
	var got slotsResp
	from, to := time.Now().Format(time.DateOnly), time.Now().AddDate(0, 0, 13).Format(time.DateOnly)
	return c.JSON("GET", "/api/v1/clinics/"+clinic+"/slots?from="+from+"&to="+to, nil, &got) == 200 && len(got.Slots) > 0
}

// rawPublish speaks the NATS protocol itself, as an attacker's client would:
// it signs in with creds, publishes n bytes to subject, and returns what the
// server answers.
func rawPublish(t *testing.T, url string, creds []byte, subject string, n int) string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ Nonce string }
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "INFO ")), &info); err != nil {
		t.Fatal(err)
	}
	token, _ := jwt.ParseDecoratedJWT(creds)
	kp, _ := jwt.ParseDecoratedUserNKey(creds)
	sig, _ := kp.Sign([]byte(info.Nonce))
	connect, _ := json.Marshal(map[string]any{"jwt": token, "sig": base64.RawURLEncoding.EncodeToString(sig),
		"protocol": 1, "verbose": false, "pedantic": false, "headers": true})
	fmt.Fprintf(conn, "CONNECT %s\r\nPING\r\n", connect)
	if line, _ = r.ReadString('\n'); !strings.HasPrefix(line, "PONG") {
		t.Fatalf("sign in: %q", line)
	}
	fmt.Fprintf(conn, "PUB %s %d\r\n%s\r\nPING\r\n", subject, n, strings.Repeat("x", n))
	for { // past the server's INFO updates: an error, or PONG for a message taken
		line, err = r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "INFO ") {
			return strings.TrimSpace(line)
		}
	}
}

// TestHTTPConnCap: the web front holds at most MaxHTTPConns connections (a
// quarter of the file handles by default), so a flood of them leaves
// JetStream its files; one more waits until one closes, then is served.
func TestHTTPConnCap(t *testing.T) {
	r := startRelay(t, relay.Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:0", MaxHTTPConns: 4})
	addr := strings.TrimPrefix(r.HTTPURL(), "http://")
	var idle []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	hc := &http.Client{Timeout: 500 * time.Millisecond}
	if resp, err := hc.Get(r.HTTPURL() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a fifth connection was served beside four held open")
	}
	idle[0].Close()
	poll.For(t, 5*time.Second, func() error {
		resp, err := hc.Get(r.HTTPURL() + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}
