package integration

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/relay"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// TestServe_ExternalNATS: `relay serve --nats-url` provisions an existing
// NATS server (here one with JetStream and no auth, as in docker-compose.yml)
// and serves from it.
func TestServe_ExternalNATS(t *testing.T) {
	ns := startNATS(t, freeAddr(t), t.TempDir())
	r := startRelay(t, relay.Config{NATSURL: ns.ClientURL()})
	ctx := t.Context()
	if r.Node != nil {
		t.Fatal("external mode started an embedded node")
	}

	// An operator registers a clinic straight in CLINICS; the site shows it.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, subjects.BucketClinics)
	if err != nil {
		t.Fatalf("CLINICS not provisioned: %v", err)
	}
	b, _ := json.Marshal(services.Clinic{ID: "ash", Name: "Ash Clinic", TimeZone: "Europe/Paris"})
	if _, err := kv.Put(ctx, "ash", b); err != nil {
		t.Fatal(err)
	}
	web := newClient(t, r.HTTPURL())
	poll.For(t, 5*time.Second, func() error {
		_, _, page := web.Do("GET", "/", "", nil)
		if !strings.Contains(page, "Ash Clinic") {
			return context.DeadlineExceeded
		}
		return nil
	})
}
