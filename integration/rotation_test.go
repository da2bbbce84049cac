package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/clinicrelay/clinicrelay/agent"
	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/internal/poll"
)

// TestKeyRotation: after `clinic-agent rotate-key`, a request sealed to the
// former key while the agent was away still opens, and new requests are
// sealed to the new key, which the agent publishes when it starts again.
func TestKeyRotation(t *testing.T) {
	env := NewEnv(t)
	creds := env.MustAddClinic("elm")
	path := filepath.Join(t.TempDir(), "seal.nk")
	con := openDemoConsole(t, console.Config{})
	run := func() (stop func()) {
		key, old, err := agent.LoadSealKeys(path)
		if err != nil {
			t.Fatal(err)
		}
		ag, err := agent.New(agent.Config{NATSURL: env.Relay.NATSURL(), Creds: creds, Logger: testLogger(t),
			SyncEvery: 200 * time.Millisecond, SealKey: key, OldSealKeys: old}, con)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { ag.Run(ctx); close(done) }()
		return func() { cancel(); <-done }
	}
	stop := run()
	web := newClient(t, env.Relay.HTTPURL())
	slots := awaitSlots(t, web, "elm", 2)
	stop()

	var before map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/elm/requests", validRequest(slots[0]), &before); code != 201 {
		t.Fatalf("create before the rotation: %d", code)
	}
	pub, err := agent.RotateSealKey(path)
	if err != nil || !nkeys.IsValidPublicCurveKey(pub) {
		t.Fatalf("rotate: %q %v", pub, err)
	}
	stop = run()
	defer stop()
	awaitState(t, web, before["token"], "delivered")
	poll.For(t, 10*time.Second, func() error {
		if got, _ := env.Relay.Catalog.SealKey("elm"); got != pub {
			return fmt.Errorf("the relay seals to %s, want the new key %s", got, pub)
		}
		return nil
	})
	var after map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/elm/requests", validRequest(slots[1]), &after); code != 201 {
		t.Fatalf("create after the rotation: %d", code)
	}
	awaitState(t, web, after["token"], "delivered")
}
