package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/cmd/relay/app"
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
	if code, _, stderr := relayCmd(t, "restore", archive, "--operator-key", other, "--data", t.TempDir()+"/x"); code == 0 ||
		!strings.Contains(stderr, "does not open") {
		t.Fatalf("restore with another operator key: %d %s", code, stderr)
	}
	fresh := filepath.Join(t.TempDir(), "restored")
	code, out, stderr := relayCmd(t, "restore", archive, "--operator-key", filepath.Join(env.DataDir, "auth", "operator.nk"), "--data", fresh)
	if code != 0 {
		t.Fatalf("restore: %d %s %s", code, out, stderr)
	}

	r := startRelay(t, app.Config{DataDir: fresh, NATSListen: "127.0.0.1:0", AckWait: time.Second})
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
