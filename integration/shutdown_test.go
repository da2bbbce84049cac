package integration

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/relay"
)

// freezer forwards TCP to target until Freeze: then it keeps the connections
// open and forwards nothing more, as a server that hangs would. Cut closes
// the connections open now, as a dropped link would.
type freezer struct {
	ln     net.Listener
	mu     sync.Mutex
	frozen bool
	conns  []net.Conn
}

func startFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, s)
			f.mu.Unlock()
			go f.pipe(c, s)
			go f.pipe(s, c)
		}
	}()
	return f
}

func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		f.mu.Lock()
		frozen := f.frozen
		f.mu.Unlock()
		if frozen {
			io.Copy(io.Discard, src) // swallow everything from now on
			return
		}
		if n > 0 {
			dst.Write(buf[:n])
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// Cut closes every connection open now; new ones are forwarded.
func (f *freezer) Cut() {
	f.mu.Lock()
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (f *freezer) Freeze() {
	f.mu.Lock()
	f.frozen = true
	f.mu.Unlock()
}

// TestShutdown_HungNATS: a relay whose NATS server hangs (connections open,
// nothing answered) stops within ShutdownDrain, not after nats.go's 30 s
// drain per connection.
func TestShutdown_HungNATS(t *testing.T) {
	nats := startNATS(t, freeAddr(t), t.TempDir())
	f := startFreezer(t, nats.Addr().String())
	r, err := relay.Start(context.Background(), relay.Config{DataDir: t.TempDir(), NATSURL: "nats://" + f.ln.Addr().String(), HTTPAddr: "127.0.0.1:0",
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	f.Freeze()
	t0 := time.Now()
	r.Shutdown()
	if took := time.Since(t0); took > 10*time.Second {
		t.Errorf("Shutdown took %s with a hung NATS, want at most about %s", took, relay.ShutdownDrain)
	}
}
