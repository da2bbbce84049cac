package jetstream_test

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/natstest"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/notify"
	"github.com/clinicrelay/clinicrelay/subjects"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// TestDefinitions_Golden pins what every deployment gets: a change to a
// stream, bucket or consumer definition must change testdata on purpose.
func TestDefinitions_Golden(t *testing.T) {
	got, err := json.MarshalIndent(map[string]any{
		"requests":        cjs.RequestsStream(cjs.Options{}),
		"audit":           cjs.AuditStream(cjs.Options{}),
		"buckets":         cjs.Buckets(cjs.Options{}),
		"consumer":        cjs.AgentConsumer("maple", 0),
		"notify":          cjs.NotifyStream(cjs.Options{}),
		"health":          cjs.HealthStream(cjs.Options{}),
		"notify_follower": cjs.FollowerConsumer(),
		"notify_sender":   cjs.SenderConsumer(subjects.ChannelEmail, len(notify.DefaultRetries)+1),
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "definitions.golden.json")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./jetstream -run Golden -update)", err)
	}
	if string(got) != string(want) {
		t.Errorf("definitions changed:\n%s\nwant (%s):\n%s", got, path, want)
	}
}

// runJetStream starts an embedded JetStream server on a random port.
func runJetStream(t *testing.T) jetstream.JetStream { return natstest.RunJetStream(t) }

// TestProvision_Idempotent provisions twice on a real embedded server.
func TestProvision_Idempotent(t *testing.T) {
	js := runJetStream(t)
	ctx := context.Background()
	for i := range 2 {
		if err := cjs.Provision(ctx, js, cjs.Options{}); err != nil {
			t.Fatalf("provision #%d: %v", i+1, err)
		}
	}
	st, err := js.Stream(ctx, subjects.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.Retention != jetstream.WorkQueuePolicy || !cfg.DiscardNewPerSubject || cfg.MaxConsumers != cjs.MaxClinicConsumers ||
		cfg.Duplicates != cjs.RequestDedupe {
		t.Errorf("REQUESTS as provisioned: %+v", cfg)
	}
	for _, b := range []string{subjects.BucketAvailability, subjects.BucketHolds, subjects.BucketStatus, subjects.BucketClinics} {
		if _, err := js.KeyValue(ctx, b); err != nil {
			t.Errorf("bucket %s: %v", b, err)
		}
	}
	for i := range 2 {
		if _, err := cjs.EnsureAgentConsumer(ctx, js, "maple", 0); err != nil {
			t.Fatalf("consumer #%d: %v", i+1, err)
		}
	}
}
