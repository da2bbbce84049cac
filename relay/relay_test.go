package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/internal/natstest"
	"github.com/clinicrelay/clinicrelay/internal/poll"
)

// get answers the status and body of url.
func get(url string) (int, string, error) {
	res, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

// serve starts r's HTTP and stops it, then r, at the test's end.
func serve(t *testing.T, r *Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		r.Shutdown()
	})
}

func readyz(r *Relay) func() error {
	return func() error {
		code, body, err := get(r.HTTPURL() + "/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("/readyz %d: %s", code, body)
		}
		return nil
	}
}

// An external NATS that goes away makes the relay unready at once, and
// Shutdown still ends within its drain deadline.
func TestStart_ExternalNATSLost(t *testing.T) {
	s := natstest.RunServer(t)
	r, err := Start(t.Context(), Config{NATSURL: s.ClientURL(), HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		ProbeEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, r)
	if r.Node != nil || r.NATSURL() != s.ClientURL() || r.AgentURL() != s.ClientURL() {
		t.Fatalf("external mode: node %v, NATS URL %q, agent URL %q; want no node and %s",
			r.Node, r.NATSURL(), r.AgentURL(), s.ClientURL())
	}
	poll.For(t, 5*time.Second, readyz(r))
	if _, body, err := get(r.HTTPURL() + "/metrics"); err != nil || !strings.Contains(body, "clinicrelay_ready 1") {
		t.Fatalf("metrics while ready (%v): want clinicrelay_ready 1 in\n%s", err, body)
	}

	s.Shutdown()
	poll.For(t, 2*time.Second, func() error {
		code, body, err := get(r.HTTPURL() + "/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "NATS connection down") {
			return fmt.Errorf("/readyz %d: %s; want 503 naming the connection", code, body)
		}
		return nil
	})
	if _, body, _ := get(r.HTTPURL() + "/metrics"); !strings.Contains(body, "clinicrelay_ready 0") {
		t.Fatalf("metrics with NATS gone: want clinicrelay_ready 0 in\n%s", body)
	}
	t0 := time.Now()
	r.Shutdown()
	if took := time.Since(t0); took > ShutdownDrain+time.Second {
		t.Fatalf("Shutdown with NATS gone took %s; want at most %s", took, ShutdownDrain)
	}
	r.Shutdown() // twice is safe
}

// The demo onboards its clinic once, runs its agent and console, and starts
// again on the same data dir; the front desk's sign-in it prints works, and
// only until the next start makes another.
func TestStartDemo_Restarts(t *testing.T) {
	dir := t.TempDir()
	var before Demo
	for run := range 2 {
		r, err := Start(t.Context(), Config{DataDir: dir, NATSListen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		d, err := r.StartDemo(t.Context(), filepath.Join(dir, "demo-agent"), "127.0.0.1:0")
		if err != nil {
			r.Shutdown()
			t.Fatalf("run %d: demo: %v", run, err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		served := make(chan error, 1)
		go func() { served <- r.Serve(ctx) }()
		page := r.HTTPURL() + "/c/" + DemoClinic.ID
		poll.For(t, 10*time.Second, func() error {
			code, body, err := get(page)
			if err != nil {
				return err
			}
			// The agent has published the demo's week: a free time is offered.
			if code != http.StatusOK || !strings.Contains(body, DemoClinic.Name) || !strings.Contains(body, `class="slot"`) {
				return fmt.Errorf("run %d: %s: %d without the clinic and its times", run, page, code)
			}
			return nil
		})
		console := "http://" + d.ConsoleAddr
		if code := signIn(t, console, d.User, d.Password); code != http.StatusOK {
			t.Fatalf("run %d: the printed sign-in %s: %d", run, d.User, code)
		}
		if run == 1 && before.Password != "" {
			if before.Password == d.Password {
				t.Fatal("the same demo password twice")
			}
			if code := signIn(t, console, before.User, before.Password); code != http.StatusUnauthorized {
				t.Fatalf("the previous start's password: %d, want 401", code)
			}
		}
		before = d
		cancel()
		if err := <-served; err != nil {
			t.Fatalf("run %d: Serve: %v", run, err)
		}
		d.Stop()
		r.Shutdown()
	}
}

// signIn posts a sign-in to the console at base and returns the status.
func signIn(t *testing.T, base, name, password string) int {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"password":%q}`, name, password)
	res, err := http.Post(base+"/api/session", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func TestLink(t *testing.T) {
	l := newLink()
	first := l.current()
	l.up()
	if l.current() != first || first.Err() != nil {
		t.Fatal("up while up replaced the live context")
	}
	l.down()
	if !errors.Is(first.Err(), context.Canceled) {
		t.Fatal("down left the connection's context live: requests waiting on NATS would not end")
	}
	l.up()
	if again := l.current(); again == first || again.Err() != nil {
		t.Fatal("up after down did not give a fresh live context")
	}
}

func TestHealth_Check(t *testing.T) {
	l := newLink()
	h := &health{every: time.Second}
	if err := h.check(l); err == nil || !strings.Contains(err.Error(), "not taken a write yet") {
		t.Fatalf("before any probe: %v", err)
	}
	h.okAt = time.Now()
	if err := h.check(l); err != nil {
		t.Fatalf("after a probe wrote: %v", err)
	}
	h.okAt, h.err = time.Now().Add(-4*time.Second), errors.New("timeout")
	if err := h.check(l); err == nil || err.Error() != "JetStream cannot write" {
		t.Fatalf("three probes failed: %v (the probe's own error stays in the log)", err)
	}
	h.okAt = time.Now()
	l.down()
	if err := h.check(l); err == nil || !strings.Contains(err.Error(), "connection down") {
		t.Fatalf("link down: %v", err)
	}
}

func TestPendingSecret(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(pendingKeyEnv, "")
	a, err := pendingSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, pendingKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("made key file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	if b, err := pendingSecret(dir); err != nil || string(b) != string(a) {
		t.Fatalf("second read changed the secret (%v): every booking's HMAC would move", err)
	}
	t.Setenv(pendingKeyEnv, "a-shared-secret-for-all-relays")
	if b, _ := pendingSecret(dir); string(b) != "a-shared-secret-for-all-relays" {
		t.Fatalf("env secret ignored: %q", b)
	}
	t.Setenv(pendingKeyEnv, "short")
	if _, err := pendingSecret(dir); err == nil || !strings.Contains(err.Error(), pendingKeyEnv) {
		t.Fatalf("short env secret: %v", err)
	}
	t.Setenv(pendingKeyEnv, "")
	os.WriteFile(filepath.Join(dir, pendingKeyFile), []byte("short\n"), 0o600)
	if _, err := pendingSecret(dir); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("short file secret: %v", err)
	}
}

func TestLoadNotifyKey(t *testing.T) {
	dir := t.TempDir()
	a, err := loadNotifyKey(dir)
	if err != nil || len(a) != 32 {
		t.Fatalf("made key: %d bytes, %v", len(a), err)
	}
	if b, err := loadNotifyKey(dir); err != nil || string(b) != string(a) {
		t.Fatalf("second read changed the key (%v): kept contacts would no longer open", err)
	}
	os.WriteFile(filepath.Join(dir, notifyKeyFile), []byte("not hex\n"), 0o600)
	if _, err := loadNotifyKey(dir); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
		t.Fatalf("bad key file: %v", err)
	}
}

func TestAbuse_WebLimits(t *testing.T) {
	if (Abuse{}).webLimits().Off {
		t.Fatal("limits off by default")
	}
	if !(Abuse{Off: true}).webLimits().Off {
		t.Fatal("Abuse.Off left the web front's rate limits on")
	}
}
