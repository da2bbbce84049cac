package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/jetstream/auth"
	"github.com/clinicrelay/clinicrelay/relay"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// TestBackupRestore: a backup of a running relay restored into a fresh data
// dir brings back the clinic, its availability and its queued request, and
// the clinic's agent, with its old creds, drains it there. The archive shows
// nothing in clear and does not open with another operator key.
func TestBackupRestore(t *testing.T) {
	env := NewEnv(t)
	creds := env.MustAddClinic("birch")
	ag := env.MustStartAgent(creds, nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	slots := awaitSlots(t, web, "birch", 3)
	// One request the clinic has, and booked: its status was rewritten
	// against a revision, which restore must not replay.
	var booked map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/birch/requests", validRequest(slots[2]), &booked); code != 201 {
		t.Fatalf("create: %d", code)
	}
	awaitState(t, web, booked["token"], "delivered")
	if _, err := ag.Console.Confirm(t.Context(), booked["id"]); err != nil {
		t.Fatal(err)
	}
	awaitState(t, web, booked["token"], "booked")
	ag.Stop()
	var queued map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/birch/requests", validRequest(slots[0]), &queued); code != 201 {
		t.Fatalf("create: %d", code)
	}
	archive := filepath.Join(t.TempDir(), "relay.backup")
	if code, out, stderr := relayCmd(t, "backup", "--out", archive, "--data", env.DataDir); code != 0 {
		t.Fatalf("backup: %d %s %s", code, out, stderr)
	}
	b, _ := os.ReadFile(archive)
	for _, clear := range []string{"Clinic birch", "birch.", "operator", subjects.StreamRequests} {
		if bytes.Contains(b, []byte(clear)) {
			t.Errorf("the archive shows %q in clear", clear)
		}
	}
	other := filepath.Join(t.TempDir(), "other.nk")
	os.WriteFile(other, []byte("SOAJJQ4H7ZWYBKFX5KMJMZOYCALXJFOKXWO3P6YSK6GSP3RIYHSRJ7KU6A"), 0o600)
	if code, _, stderr := relayCmd(t, "restore", archive, "--operator-key", other, "--data", t.TempDir()+"/x", "--as-backed-up"); code == 0 ||
		!strings.Contains(stderr, "does not open") {
		t.Fatalf("restore with another operator key: %d %s", code, stderr)
	}
	fresh := filepath.Join(t.TempDir(), "restored")
	code, out, stderr := relayCmd(t, "restore", archive, "--operator-key", filepath.Join(env.DataDir, "auth", "operator.nk"),
		"--data", fresh, "--previous-data", env.DataDir)
	if code != 0 {
		t.Fatalf("restore: %d %s %s", code, out, stderr)
	}

	r := startRelay(t, relay.Config{DataDir: fresh, NATSListen: "127.0.0.1:0", AckWait: time.Second})
	restored := &Env{t: t, Relay: r, DataDir: fresh, ctx: t.Context()}
	web2 := newClient(t, r.HTTPURL())
	if !hasSlot(t, web2, "birch", slots[1]) {
		t.Fatal("the restored relay does not offer the clinic's availability")
	}
	awaitState(t, web2, queued["token"], "received")
	awaitState(t, web2, booked["token"], "booked")
	restored.MustStartAgent(creds, nil, nil) // its creds from before still work
	awaitState(t, web2, queued["token"], "delivered")
}

// TestRestore_KeepsRevocations: a clinic revoked and one purged after the
// backup stay revoked and purged when it is restored with the previous
// relay's data dir; without it the restore refuses, unless told to restore
// as backed up, and then lists the clinics active again. Seal keys are not
// restored: each agent publishes its own when it reconnects.
func TestRestore_KeepsRevocations(t *testing.T) {
	env := NewEnv(t)
	ash, elm, oak := env.MustAddClinic("ash"), env.MustAddClinic("elm"), env.MustAddClinic("oak")
	for _, creds := range [][]byte{ash, elm, oak} {
		env.MustStartAgent(creds, nil, nil) // each publishes a seal key
	}
	web := newClient(t, env.Relay.HTTPURL())
	firstSlot(t, web, "oak")
	var queued map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/elm/requests", validRequest(firstSlot(t, web, "elm")), &queued); code != 201 {
		t.Fatalf("create: %d", code)
	}
	archive := filepath.Join(t.TempDir(), "relay.backup")
	if code, out, stderr := relayCmd(t, "backup", "--out", archive, "--data", env.DataDir); code != 0 {
		t.Fatalf("backup: %d %s %s", code, out, stderr)
	}
	if _, err := env.Admin.Revoke(t.Context(), "ash"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Admin.Purge(t.Context(), "elm"); err != nil {
		t.Fatal(err)
	}
	opKey := filepath.Join(env.DataDir, "auth", "operator.nk")

	code, _, stderr := relayCmd(t, "restore", archive, "--operator-key", opKey, "--data", filepath.Join(t.TempDir(), "x"))
	if code == 0 || !strings.Contains(stderr, "--previous-data DIR") {
		t.Fatalf("a restore that would bring back revoked clinics unsaid: %d %s", code, stderr)
	}

	fresh := filepath.Join(t.TempDir(), "restored")
	code, out, stderr := relayCmd(t, "restore", archive, "--operator-key", opKey, "--data", fresh, "--previous-data", env.DataDir)
	if code != 0 {
		t.Fatalf("restore: %d %s %s", code, out, stderr)
	}
	for _, want := range []string{"revoked again: ash", "purged again: elm", "seal keys dropped: 3"} {
		if !strings.Contains(out, want) {
			t.Errorf("restore said %q, not %q", out, want)
		}
	}
	r := startRelay(t, relay.Config{DataDir: fresh, NATSListen: "127.0.0.1:0", AckWait: time.Second})
	restored := &Env{t: t, Relay: r, DataDir: fresh, ctx: t.Context()}
	co, _ := auth.CredsOption(ash)
	if nc, err := nats.Connect(r.NATSURL(), co, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Error("ash's revoked creds connect to the restored relay")
	}
	web2 := newClient(t, r.HTTPURL())
	var list []struct{ ID string }
	web2.JSON("GET", "/api/v1/clinics", nil, &list)
	for _, c := range list {
		if c.ID == "ash" || c.ID == "elm" {
			t.Errorf("the restored relay lists %s", c.ID)
		}
	}
	if code := web2.JSON("GET", "/api/v1/requests/"+queued["token"], nil, nil); code != 404 {
		t.Errorf("elm's request, purged after the backup: %d on the restored relay", code)
	}
	// oak's seal key is gone until its agent is back: no request is sealed
	// to a key the clinic may have replaced.
	slot := firstSlot(t, web2, "oak")
	if code := web2.JSON("POST", "/api/v1/clinics/oak/requests", validRequest(slot), nil); code != 503 {
		t.Errorf("a request for oak before its agent published its key: %d, want 503", code)
	}
	restored.MustStartAgent(oak, nil, nil)
	poll.For(t, 10*time.Second, func() error {
		if code := web2.JSON("POST", "/api/v1/clinics/oak/requests", validRequest(slot), nil); code != 201 {
			return fmt.Errorf("a request for oak once its agent is back: %d", code)
		}
		return nil
	})

	code, out, stderr = relayCmd(t, "restore", archive, "--operator-key", opKey, "--data", filepath.Join(t.TempDir(), "as"), "--as-backed-up")
	if code != 0 || !strings.Contains(out, "WARNING: restored as backed up") || !strings.Contains(out, "active clinics: ash, elm, oak") {
		t.Errorf("restore --as-backed-up: %d %s %s", code, out, stderr)
	}
}
