package integration

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/jetstream/node"
	"github.com/clinicrelay/clinicrelay/relay"
	"github.com/clinicrelay/clinicrelay/services"
)

// TestEncryptionAtRest: the relay's disk holds no request's text at all
// (requests are sealed to the clinic), and with a key not even the clinic's
// name, which it shows without one; an encrypted data dir refuses to start
// without its key.
func TestEncryptionAtRest(t *testing.T) {
	marker := "marker-" + strings.Repeat("q", 8) + time.Now().Format("150405.000000")
	plain := t.TempDir()
	queueWithMarker(t, plain, "", marker)
	if dirHas(t, plain, "reason-"+marker) {
		t.Fatal("a queued request's text is on the relay's disk")
	}
	if !dirHas(t, plain, "name-"+marker) {
		t.Fatal("control: the clinic's name is not on disk without encryption, so this test proves nothing")
	}
	sealed := t.TempDir()
	queueWithMarker(t, sealed, "a-key-of-at-least-16-chars", marker)
	if dirHas(t, sealed, marker) {
		t.Fatal("the clinic's name or a request's text is readable on the relay's disk with encryption on")
	}
	_, err := relay.Start(t.Context(), relay.Config{DataDir: sealed, HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0"})
	if !errors.Is(err, node.ErrNeedsKey) {
		t.Fatalf("start without the key: %v, want %v", err, node.ErrNeedsKey)
	}
}

// queueWithMarker runs a relay on dir (encrypted with key when set), adds a
// clinic named "name-<marker>", queues one request whose reason is
// "reason-<marker>" while its agent is away, and stops the relay so that
// everything is on disk.
func queueWithMarker(t *testing.T, dir, key, marker string) {
	t.Helper()
	r, err := relay.Start(t.Context(), relay.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0",
		EncryptionKey: key, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(t.Context())
	defer r.Shutdown()
	env := &Env{t: t, Relay: r, DataDir: dir, ctx: t.Context()}
	if env.Admin, err = r.Admin(t.Context()); err != nil {
		t.Fatal(err)
	}
	creds, err := env.Admin.Add(t.Context(), services.Clinic{ID: "pine", Name: "name-" + marker, TimeZone: "America/Toronto"})
	if err != nil {
		t.Fatal(err)
	}
	ag := env.MustStartAgent(creds, nil, nil)
	web := newClient(t, r.HTTPURL())
	slot := firstSlot(t, web, "pine")
	ag.Stop()
	req := validRequest(slot)
	req["reason"] = "reason-" + marker
	if code := web.JSON("POST", "/api/v1/clinics/pine/requests", req, nil); code != 201 {
		t.Fatalf("create: %d", code)
	}
}

// dirHas says whether any file under dir contains s.
func dirHas(t *testing.T, dir, s string) bool {
	t.Helper()
	found := false
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found {
			return nil
		}
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, []byte(s)) {
			found = true
		}
		return nil
	})
	return found
}
