package integration

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	agentapp "github.com/clinicrelay/clinicrelay/cmd/clinic-agent/app"
	"github.com/clinicrelay/clinicrelay/cmd/relay/app"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/relay"
)

func runRelay(t *testing.T, args []string, stdout, stderr io.Writer) int {
	t.Helper()
	return app.Main(context.Background(), args, stdout, stderr)
}

func relayCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut strings.Builder
	code := runRelay(t, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// stoppedDataDir is a data dir of a relay that ran once and stopped.
func stoppedDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	r, err := relay.Start(context.Background(), relay.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	r.Shutdown()
	return dir
}

// TestCommands_Stopped: clinic and creds commands open the data dir
// themselves when no relay runs, and the relay then serves what they did.
func TestCommands_Stopped(t *testing.T) {
	dir := stoppedDataDir(t)
	out := t.TempDir()
	code, stdout, stderr := relayCmd(t, "clinic", "add", "--slug", "maple", "--name", "Maple Street Physio",
		"--timezone", "America/Toronto", "--out", out, "--data", dir)
	if code != 0 {
		t.Fatalf("add: %d %s", code, stderr)
	}
	creds := filepath.Join(out, "maple.creds")
	if !strings.Contains(stdout, "clinic-agent run --nats-url nats://127.0.0.1:") || !strings.Contains(stdout, "--creds "+creds) ||
		!strings.Contains(stdout, "a clinic cannot dial it. Pass --public-nats-url") {
		t.Errorf("add does not print the agent command, with a note that its address is local: %s", stdout)
	}
	if st, err := os.Stat(creds); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("creds file: %v %v", st, err)
	}
	if code, stdout, _ := relayCmd(t, "clinic", "list", "--data", dir); code != 0 || !strings.Contains(stdout, "maple") ||
		!strings.Contains(stdout, "Maple Street Physio") {
		t.Errorf("list: %d %s", code, stdout)
	}
	opCreds := filepath.Join(out, "op.creds")
	if code, stdout, stderr := relayCmd(t, "creds", "operator", "--out", opCreds, "--data", dir); code != 0 ||
		!strings.Contains(stdout, "nats context save") {
		t.Errorf("creds operator: %d %s %s", code, stdout, stderr)
	}

	// The relay started afterwards knows the clinic, and the creds work.
	ctx, cancel := context.WithCancel(context.Background())
	r, err := relay.Start(ctx, relay.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done; r.Shutdown() }()
	actx, acancel := context.WithCancel(ctx)
	agentDone := make(chan int)
	go func() {
		agentDone <- agentapp.Main(actx, []string{"run", "--nats-url", r.NATSURL(), "--creds", creds,
			"--data", t.TempDir(), "--console", "127.0.0.1:0"}, io.Discard, io.Discard)
	}()
	web := newClient(t, r.HTTPURL())
	poll.For(t, 10*time.Second, func() error {
		_, _, body := web.Do("GET", "/c/maple", "", nil)
		if !strings.Contains(body, "last synced just now") {
			return io.EOF
		}
		return nil
	})
	acancel()
	if code := <-agentDone; code != 0 {
		t.Errorf("clinic-agent exit %d", code)
	}
}

// TestCommands_BadInput: every command refuses bad input with a clear
// message and a non-zero exit code.
func TestCommands_BadInput(t *testing.T) {
	dir := stoppedDataDir(t)
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, []byte("x"), 0o600)
	shortKey := filepath.Join(t.TempDir(), "short.key")
	os.WriteFile(shortKey, []byte("short\n"), 0o600)
	if code, _, stderr := relayCmd(t, "clinic", "add", "--slug", "dup", "--name", "Dup", "--timezone", "UTC",
		"--out", t.TempDir(), "--data", dir); code != 0 {
		t.Fatal(stderr)
	}
	add := func(extra ...string) []string {
		return append([]string{"clinic", "add", "--name", "N", "--timezone", "America/Toronto", "--out", t.TempDir()}, extra...)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no command", nil, 2, "usage"},
		{"unknown command", []string{"launch"}, 2, "usage"},
		{"clinic without verb", []string{"clinic"}, 2, "usage"},
		{"unknown flag", []string{"clinic", "list", "--nope"}, 2, "flag provided but not defined"},
		{"slug with dot", add("--slug", "a.b", "--data", dir), 1, "--slug"},
		{"slug upper case", add("--slug", "Maple", "--data", dir), 1, "--slug"},
		{"slug missing", add("--data", dir), 1, "--slug"},
		{"bad zone", []string{"clinic", "add", "--slug", "ok", "--name", "N", "--timezone", "Mars/Olympus", "--data", dir}, 1, "--timezone"},
		{"empty zone", []string{"clinic", "add", "--slug", "ok", "--name", "N", "--data", dir}, 1, "--timezone"},
		{"no name", []string{"clinic", "add", "--slug", "ok", "--timezone", "UTC", "--data", dir}, 1, "--name"},
		{"duplicate", add("--slug", "dup", "--data", dir), 1, "already exists"},
		{"out not a dir", []string{"clinic", "add", "--slug", "ok", "--name", "N", "--timezone", "UTC", "--out", notDir, "--data", dir}, 1, "--out"},
		{"missing data dir", add("--slug", "ok", "--data", filepath.Join(dir, "nope")), 1, "does not exist"},
		{"data dir is a file", []string{"clinic", "list", "--data", notDir}, 1, "not a directory"},
		{"data dir not a relay's", []string{"clinic", "list", "--data", t.TempDir()}, 1, "not a relay data dir"},
		{"revoke without slug", []string{"clinic", "revoke", "--data", dir}, 2, "needs a SLUG"},
		{"revoke bad slug", []string{"clinic", "revoke", "a*", "--data", dir}, 1, "clinic id"},
		{"revoke unknown", []string{"clinic", "revoke", "ghost", "--data", dir}, 1, "no clinic"},
		{"creds bad data", []string{"creds", "operator", "--data", filepath.Join(dir, "nope")}, 1, "does not exist"},
		{"creds unknown kind", []string{"creds", "root"}, 2, "usage"},
		{"serve creds without url", []string{"serve", "--creds", "web.creds"}, 2, "goes with --nats-url"},
		{"serve unreachable nats", []string{"serve", "--nats-url", "nats://127.0.0.1:1", "--http", "127.0.0.1:0"}, 1, "connect nats://127.0.0.1:1"},
		{"serve bad replicas", []string{"serve", "--replicas", "9"}, 1, "--replicas"},
		{"serve tls cert without key", []string{"serve", "--tls-cert", "cert.pem"}, 2, "--tls-cert goes with --tls-key"},
		{"serve require tls without certs", []string{"serve", "--require-tls"}, 1, "--require-tls needs"},
		{"serve missing tls files", []string{"serve", "--data", t.TempDir(), "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
			"--tls-cert", "nope.pem", "--tls-key", "nope.pem"}, 1, "nats tls"},
		{"serve short encryption key", []string{"serve", "--data", t.TempDir(), "--encryption-key-file", shortKey}, 1, "at least 16 characters"},
		{"serve data is a file", []string{"serve", "--data", notDir}, 1, "not a directory"},
		{"serve bad listen", []string{"serve", "--data", t.TempDir(), "--nats-listen", "nope", "--http", "127.0.0.1:0"}, 1, "nats listen"},
		{"demo on external nats", []string{"demo", "--nats-url", "nats://x", "--creds", "f"}, 1, "embedded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := relayCmd(t, tt.args...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.wantErr) {
				t.Fatalf("relay %q: exit %d, stderr %q; want exit %d and %q", tt.args, code, stderr, tt.wantCode, tt.wantErr)
			}
		})
	}

	opCreds := filepath.Join(t.TempDir(), "op.creds")
	relayCmd(t, "creds", "operator", "--out", opCreds, "--data", dir)
	badKey := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(badKey, []byte("not hex\n"), 0o600)
	agentData := t.TempDir()
	for _, tt := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no command", nil, 2, "usage"},
		{"missing creds", []string{"run", "--nats-url", "nats://127.0.0.1:1"}, 2, "required"},
		{"creds file missing", []string{"run", "--nats-url", "nats://127.0.0.1:1", "--creds", "/nonexistent"}, 1, "creds"},
		{"not an agent's creds", []string{"run", "--nats-url", "nats://127.0.0.1:1", "--creds", opCreds, "--data", t.TempDir()}, 1, "not a clinic agent's"},
		{"fhir without its url", []string{"run", "--nats-url", "nats://127.0.0.1:1", "--creds", opCreds, "--connector", "fhir"}, 2, "--fhir-url"},
		{"unknown connector", []string{"run", "--nats-url", "nats://127.0.0.1:1", "--creds", opCreds, "--connector", "pms"}, 2, "console or fhir"},
		{"fhir flags on the console", []string{"run", "--nats-url", "nats://127.0.0.1:1", "--creds", opCreds, "--fhir-url", "http://pms/fhir"}, 2, "need --connector fhir"},
		{"fhir token and basic auth", []string{"run", "--nats-url", "nats://127.0.0.1:1", "--creds", opCreds, "--connector", "fhir",
			"--fhir-url", "http://pms/fhir", "--fhir-token", opCreds, "--fhir-basic-user", "u"}, 2, "exclude each other"},
		{"fhir token file missing", []string{"run", "--nats-url", "nats://127.0.0.1:1", "--creds", opCreds, "--connector", "fhir",
			"--fhir-url", "http://pms/fhir", "--fhir-token", "/nonexistent"}, 1, "--fhir-token"},
		{"console key file missing", []string{"run", "--nats-url", "nats://127.0.0.1:1", "--creds", opCreds, "--key-file", "/nonexistent"}, 1, "--key-file"},
		{"console key not hex", []string{"run", "--nats-url", "nats://127.0.0.1:1", "--creds", opCreds, "--key-file", badKey}, 1, "64 hex digits"},
		{"console-key without --out", []string{"console-key"}, 2, "usage"},
		{"console-key over a file", []string{"console-key", "--out", badKey}, 1, "exists"},
		{"user without a verb", []string{"user"}, 2, "usage"},
		{"user with an unknown verb", []string{"user", "promote", "--name", "ana", "--data", agentData}, 2, "usage"},
		{"user add without a name", []string{"user", "add", "--role", "admin", "--data", agentData}, 2, "--name"},
		{"user add with a bad role", []string{"user", "add", "--name", "ana", "--role", "owner", "--data", agentData}, 1, "--role: role must be admin or frontdesk"},
		{"user add admin with providers", []string{"user", "add", "--name", "ana", "--role", "admin", "--provider", "dr-lee", "--data", agentData}, 1, "--providers"},
		{"user disable of no one", []string{"user", "disable", "--name", "nobody", "--data", agentData}, 1, "no user"},
	} {
		t.Run("agent "+tt.name, func(t *testing.T) {
			var errOut strings.Builder
			code := agentapp.Main(context.Background(), tt.args, io.Discard, &errOut)
			if code != tt.wantCode || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Fatalf("clinic-agent %q: exit %d, stderr %q; want %d and %q", tt.args, code, errOut.String(), tt.wantCode, tt.wantErr)
			}
		})
	}
}

// TestCommands_Running: on a running relay, `clinic add` and `clinic list`
// go through NATS, and the creds it writes let an agent in.
func TestCommands_Running(t *testing.T) {
	env := NewEnv(t)
	out := t.TempDir()
	code, stdout, stderr := relayCmd(t, "clinic", "add", "--slug", "larch", "--name", "Larch Clinic",
		"--timezone", "America/Vancouver", "--out", out, "--data", env.DataDir)
	if code != 0 {
		t.Fatalf("add on a running relay: %d %s", code, stderr)
	}
	if !strings.Contains(stdout, "--nats-url "+env.Relay.NATSURL()) {
		t.Errorf("add prints %q, want the running relay's URL %s", stdout, env.Relay.NATSURL())
	}
	if code, stdout, _ := relayCmd(t, "clinic", "list", "--data", env.DataDir); code != 0 || !strings.Contains(stdout, "Larch Clinic") {
		t.Errorf("list: %d %s", code, stdout)
	}
	creds, err := os.ReadFile(filepath.Join(out, "larch.creds"))
	if err != nil {
		t.Fatal(err)
	}
	env.MustStartAgent(creds, nil, nil)
	firstSlot(t, newClient(t, env.Relay.HTTPURL()), "larch")
}

// TestCommands_Help: every command's --help lists each flag on a line of its
// own, "-name" or "-name type" (a usage text with `backquotes` once turned
// into "-creds relay clinic add"), and ends with the usage.
func TestCommands_Help(t *testing.T) {
	flagLine := regexp.MustCompile(`^  -[a-z][a-z0-9-]*( (string|int|duration|value))?$`)
	check := func(name, out string) {
		t.Helper()
		n := 0
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "  -") {
				n++
				if !flagLine.MatchString(line) {
					t.Errorf("%s --help: garbled flag line %q", name, line)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s --help lists no flags:\n%s", name, out)
		}
	}
	for _, cmd := range [][]string{{"serve"}, {"demo"}, {"clinic", "add"}, {"clinic", "list"}, {"clinic", "show"},
		{"clinic", "revoke"}, {"clinic", "purge"}, {"creds", "operator"}, {"backup"}, {"restore"}, {"notices"}, {"audit"}} {
		_, out, errOut := relayCmd(t, append(cmd, "--help")...)
		check("relay "+strings.Join(cmd, " "), out+errOut)
	}
	for _, cmd := range [][]string{{"run"}, {"rotate-key"}} {
		var out strings.Builder
		agentapp.Main(context.Background(), append(cmd, "--help"), &out, &out)
		check("clinic-agent "+strings.Join(cmd, " "), out.String())
	}
}

// TestCommands_PublicNATSURL: the agent command `relay clinic add` prints
// dials the relay's --public-nats-url (where clinics reach it), not the
// address it listens on, or its own --public-nats-url.
func TestCommands_PublicNATSURL(t *testing.T) {
	dir := t.TempDir()
	const public = "tls://relay.example.org:4222"
	startRelay(t, relay.Config{DataDir: dir, NATSListen: "127.0.0.1:0", PublicNATSURL: public})
	code, stdout, stderr := relayCmd(t, "clinic", "add", "--slug", "elm", "--name", "Elm", "--timezone", "America/Toronto",
		"--out", t.TempDir(), "--data", dir)
	if code != 0 || !strings.Contains(stdout, "clinic-agent run --nats-url "+public+" ") || strings.Contains(stdout, "Note:") {
		t.Errorf("add: %d %s %s", code, stdout, stderr)
	}
	code, stdout, _ = relayCmd(t, "clinic", "add", "--slug", "oak", "--name", "Oak", "--timezone", "America/Toronto",
		"--out", t.TempDir(), "--data", dir, "--public-nats-url", "nats://10.0.0.5:4222")
	if code != 0 || !strings.Contains(stdout, "--nats-url nats://10.0.0.5:4222 ") {
		t.Errorf("add --public-nats-url: %d %s", code, stdout)
	}
}
