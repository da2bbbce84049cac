package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/services"
)

// relayProcess is `relay` running as a child process: this test binary
// re-executed with relayChildEnv set (see TestMain).
type relayProcess struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	exited chan struct{}
}

// startRelayProcess runs `relay args...` and waits until it serves on httpAddr.
func startRelayProcess(t *testing.T, httpAddr string, args ...string) *relayProcess {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), relayChildEnv+"=1")
	cmd.Stdout, cmd.Stderr = childOutput(t), childOutput(t)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &relayProcess{cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.stop(t) })
	hc := &http.Client{Timeout: time.Second}
	poll.For(t, 30*time.Second, func() error {
		select {
		case <-p.exited:
			t.Fatalf("relay exited at start: %v", cmd.ProcessState)
		default:
		}
		resp, err := hc.Get("http://" + httpAddr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz: %d", resp.StatusCode)
		}
		return nil
	})
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *relayProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("relay still running 10s after SIGKILL")
	}
}

// stop closes the relay's stdin, which stops it cleanly; SIGKILL after 15s.
func (p *relayProcess) stop(t *testing.T) {
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Error("relay did not stop within 15s of its stdin closing")
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// tail keeps the last bytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (w *tail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if n := len(w.buf) - 8<<10; n > 0 {
		w.buf = w.buf[n:]
	}
	return len(p), nil
}

var tails sync.Map // *testing.T -> *tail

// childOutput is where a child relay writes: the test's log sink, checked
// for patient data like the in-process logs, and a tail shown on failure.
func childOutput(t *testing.T) io.Writer {
	testLogger(t)
	sink, _ := sinks.Load(t)
	tl, loaded := tails.LoadOrStore(t, &tail{})
	if !loaded {
		t.Cleanup(func() {
			tails.Delete(t)
			if t.Failed() {
				tl := tl.(*tail)
				tl.mu.Lock()
				t.Logf("relay process output, last 8K:\n%s", bytes.TrimSpace(tl.buf))
				tl.mu.Unlock()
			}
		})
	}
	return io.MultiWriter(sink.(*logSink), tl.(*tail))
}

// TestFault_RelayKill: the relay process is SIGKILLed while patients post
// requests and restarted on the same data dir and ports. Every request that
// got a 201 reaches the clinic's console exactly once, and the web accepts
// requests again after the restart.
func TestFault_RelayKill(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	// Abuse limits off: the load comes from one IP, as one patient.
	args := []string{"serve", "--data", dir, "--http", httpAddr, "--nats-listen", natsAddr, "--abuse-limits=false"}
	relay := startRelayProcess(t, httpAddr, args...)
	if code, _, stderr := relayCmd(t, "clinic", "add", "--slug", "cedar", "--name", "Cedar Clinic",
		"--timezone", "America/Toronto", "--out", out, "--data", dir); code != 0 {
		t.Fatalf("clinic add: %d %s", code, stderr)
	}
	if code, _, stderr := relayCmd(t, "creds", "operator", "--out", filepath.Join(out, "op.creds"), "--data", dir); code != 0 {
		t.Fatalf("creds operator: %d %s", code, stderr)
	}
	creds, err := os.ReadFile(filepath.Join(out, "cedar.creds"))
	if err != nil {
		t.Fatal(err)
	}
	con := openDenseConsole(t)
	counter := newCountingConnector(con, 0)
	startAgent(t, "nats://"+natsAddr, creds, counter)
	base := "http://" + httpAddr
	web := newClient(t, base)
	slots := awaitSlots(t, web, "cedar", 1000)

	l := startLoad(t, base, "cedar", slots, 4, 10*time.Second)
	l.awaitAccepted(t, 100, 20*time.Second)
	killed := time.Now()
	relay.kill(t)
	atKill := l.Accepted()
	startRelayProcess(t, httpAddr, args...)
	back := time.Since(killed)
	l.awaitAccepted(t, atKill+100, 30*time.Second)
	l.stop()
	l.report(t, killed)

	nc, err := nats.Connect("nats://"+natsAddr, nats.UserCredentials(filepath.Join(out, "op.creds")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	awaitDrained(t, js, 30*time.Second)
	extra := checkExactlyOnce(t, consoleIDs(t, con), l.accepted)
	if failed := l.failed(); extra > failed {
		t.Errorf("console holds %d requests that got no 201, but only %d requests failed", extra, failed)
	}
	awaitStates(t, web, l.accepted, services.StateDelivered, 20*time.Second)
	calls, ids := counter.Calls()
	t.Logf("SIGKILL after %d accepted; relay serving again %s later; console stored %d accepted + %d whose answer was lost "+
		"(%d deliveries for %d requests)", atKill, back.Round(time.Millisecond), len(l.accepted), extra, calls, ids)
}
