package jetstream_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// TestEnsureAgentConsumer_ReplacesDiskConsumer: a consumer a relay from
// before made on disk is replaced by the memory one, and the request queued
// for it is still delivered.
func TestEnsureAgentConsumer_ReplacesDiskConsumer(t *testing.T) {
	js := runJetStream(t)
	ctx := context.Background()
	if err := cjs.Provision(ctx, js, cjs.Options{}); err != nil {
		t.Fatal(err)
	}
	old := cjs.AgentConsumer("maple", 0)
	old.MemoryStorage, old.InactiveThreshold = false, 0
	if _, err := js.CreateOrUpdateConsumer(ctx, subjects.StreamRequests, old); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, subjects.Requests("maple"), []byte("queued before")); err != nil {
		t.Fatal(err)
	}
	c, err := cjs.EnsureAgentConsumer(ctx, js, "maple", 0)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := c.CachedInfo().Config; !cfg.MemoryStorage || cfg.InactiveThreshold != cjs.AgentIdle {
		t.Errorf("consumer after ensure: memory %v, idle %v", cfg.MemoryStorage, cfg.InactiveThreshold)
	}
	msgs, err := c.Fetch(1)
	if err != nil {
		t.Fatal(err)
	}
	for m := range msgs.Messages() {
		if string(m.Data()) != "queued before" {
			t.Errorf("got %q", m.Data())
		}
		return
	}
	t.Fatal("the request queued for the old consumer was not delivered")
}

// TestAgentConsumers_OnlyActiveClinics: the relay makes consumers for active
// clinics only, and an agent gets its consumer by asking.
func TestAgentConsumers_OnlyActiveClinics(t *testing.T) {
	js := runJetStream(t)
	ctx := context.Background()
	if err := cjs.Provision(ctx, js, cjs.Options{}); err != nil {
		t.Fatal(err)
	}
	ac := &cjs.AgentConsumers{JS: js, Logger: slog.New(slog.DiscardHandler), Active: func(c string) bool { return c == "maple" }}
	if _, err := ac.Serve(js.Conn()); err != nil {
		t.Fatal(err)
	}
	if _, err := cjs.AskAgentConsumer(ctx, js, "maple"); err != nil {
		t.Fatalf("maple: %v", err)
	}
	if _, err := cjs.AskAgentConsumer(ctx, js, "birch"); err == nil || !strings.Contains(err.Error(), "no active clinic") {
		t.Fatalf("birch (not active): %v", err)
	}
	if _, err := js.Consumer(ctx, subjects.StreamRequests, subjects.AgentConsumer("birch")); err != jetstream.ErrConsumerNotFound {
		t.Errorf("birch's consumer: %v, want none", err)
	}
}
