// Package natstest is the tests' embedded NATS: a real nats-server with
// JetStream on a random loopback port and a temp dir, stopped at the test's
// end (nats-server's RunBasicJetStreamServer is the model).
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RunJetStream starts the server and returns a JetStream handle on it.
func RunJetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(RunServer(t).ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	return js
}

// RunServer starts the server and returns it, for tests that stop it
// themselves (Shutdown is safe to call again at the test's end).
func RunServer(t testing.TB) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Port: server.RANDOM_PORT, Host: "127.0.0.1", JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return s
}
