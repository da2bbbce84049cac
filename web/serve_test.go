package web

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestServer_ServeStopsDespiteSilentConn: a connection that sent nothing yet
// (a client's spare) does not hold the server's shutdown for 5 seconds.
func TestServer_ServeStopsDespiteSilentConn(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // the server has accepted it
	t0 := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d > time.Second {
			t.Errorf("Serve took %s to stop", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve still running 3s after its context ended, held by a silent connection")
	}
}
