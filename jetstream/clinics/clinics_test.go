package clinics_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/auth"
	"github.com/clinicrelay/clinicrelay/jetstream/clinics"
	"github.com/clinicrelay/clinicrelay/jetstream/node"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

func setup(t *testing.T) (*node.Node, *clinics.Admin) {
	t.Helper()
	n, err := node.Start(node.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown)
	connect := func(name string, sys bool) *nats.Conn {
		creds, err := n.Keys.UserCreds(name, nil, sys)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := n.Connect(creds)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	js, _ := jetstream.New(connect("admin", false))
	ctx := context.Background()
	if err := cjs.Provision(ctx, js, cjs.Options{}); err != nil {
		t.Fatal(err)
	}
	return n, &clinics.Admin{JS: js, Sys: connect("sys", true), Keys: n.Keys}
}

func TestAdmin_AddAndRevoke(t *testing.T) {
	n, admin := setup(t)
	ctx := context.Background()
	creds, err := admin.Add(ctx, services.Clinic{ID: "maple", Name: "Maple", TimeZone: "America/Toronto"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Add(ctx, services.Clinic{ID: "maple", Name: "Maple", TimeZone: "America/Toronto"}); services.ErrorCode(err) != services.EConflict {
		t.Fatalf("second add: got %v, want conflict", err)
	}
	if clinic, _ := auth.CredsClinic(creds); clinic != "maple" {
		t.Fatalf("creds clinic = %q", clinic)
	}
	co, _ := auth.CredsOption(creds)
	var mu sync.Mutex
	var denied []string
	disconnected := make(chan struct{}, 1)
	nc, err := nats.Connect(n.ClientURL(), co, nats.CustomInboxPrefix(subjects.AgentInboxPrefix("maple")),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			denied = append(denied, err.Error())
			mu.Unlock()
		}),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { disconnected <- struct{}{} }),
		nats.MaxReconnects(0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	// The relay makes the agent's consumer when it asks (maple is active).
	ac := &cjs.AgentConsumers{JS: admin.JS, Logger: slog.New(slog.DiscardHandler), Active: func(c string) bool { return c == "maple" }}
	if _, err := ac.Serve(admin.JS.Conn()); err != nil {
		t.Fatal(err)
	}
	if _, err := cjs.AskAgentConsumer(ctx, js, "maple"); err != nil {
		t.Fatalf("agent gets its consumer: %v", err)
	}
	// It writes its keys through the relay; a direct publish to a KV
	// subject, its own clinic's included, is a permission violation.
	aw := &cjs.AgentWrites{JS: admin.JS, Active: func(c string) bool { return c == "maple" }}
	if err := aw.Serve(admin.JS.Conn()); err != nil {
		t.Fatal(err)
	}
	day := time.Now().UTC().Format(time.DateOnly)
	kv := cjs.NewAgentBucket(js, subjects.BucketAvailability, "maple")
	if _, err := kv.Put(ctx, "maple."+day, []byte(`{"clinic":"maple","date":"`+day+`","slots":[]}`)); err != nil {
		t.Fatalf("own availability: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := cjs.NewBucket(js, subjects.BucketAvailability).Put(short, "maple."+day, []byte("{}")); err == nil {
		t.Fatal("agent published to its KV subject itself")
	}
	short2, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	if _, err := cjs.NewAgentBucket(js, subjects.BucketAvailability, "birch").Put(short2, "birch."+day, []byte("{}")); err == nil {
		t.Fatal("agent wrote another clinic's availability")
	}
	for _, subj := range []string{"$KV.AVAILABILITY.maple." + day, subjects.AgentWrite("birch", subjects.BucketAvailability, day)} {
		poll.For(t, 3*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if !strings.Contains(strings.Join(denied, "\n"), subj) {
				return fmt.Errorf("no permission violation naming %s: %q", subj, denied)
			}
			return nil
		})
	}

	if _, err := admin.Revoke(ctx, "maple"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-disconnected:
	case <-time.After(5 * time.Second):
		t.Fatal("revoked agent still connected")
	}
	_, err = nats.Connect(n.ClientURL(), co)
	if err == nil || !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("revoked agent reconnect: got %v, want authorization violation", err)
	}
}
