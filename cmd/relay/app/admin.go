package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/auth"
	"github.com/clinicrelay/clinicrelay/jetstream/clinics"
	"github.com/clinicrelay/clinicrelay/jetstream/node"
)

// DefaultNATSURL is what agents dial when the relay never said otherwise.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// CheckDataDir refuses a path that is not a relay data dir, with a hint.
func CheckDataDir(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("data dir %s does not exist: start the relay once with `relay serve --data %s`, or pass --data", dir, dir)
	}
	if err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("data dir %s is not a directory", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "auth", "operator.nk")); err != nil {
		return fmt.Errorf("%s is not a relay data dir (no auth/operator.nk): pass the --data the relay serves", dir)
	}
	return nil
}

// adminSession is an Admin plus what the commands print.
type adminSession struct {
	*clinics.Admin
	NATSURL string // where agents dial
}

// withAdmin runs fn against the relay that owns dir: over NATS with operator
// creds when it is running, else on a temporary in-process node.
func withAdmin(ctx context.Context, dir string, fn func(context.Context, *adminSession) error) error {
	if err := CheckDataDir(dir); err != nil {
		return err
	}
	key, err := storeKey(dir, "", false)
	if err != nil {
		return err
	}
	n, err := node.Start(node.Config{DataDir: dir, EncryptionKey: key})
	if errors.Is(err, node.ErrRunning) {
		return withRunning(ctx, dir, fn)
	}
	if err != nil {
		return err
	}
	defer n.Shutdown()
	connect := func(creds []byte) (*nats.Conn, error) { return n.Connect(creds) }
	url := DefaultNATSURL
	if ri, err := node.ReadRunInfo(dir); err == nil && ri.NATSURL != "" {
		url = ri.NATSURL
	}
	return runAdmin(ctx, n.Keys, url, connect, fn)
}

func withRunning(ctx context.Context, dir string, fn func(context.Context, *adminSession) error) error {
	ri, err := node.ReadRunInfo(dir)
	if err != nil {
		return fmt.Errorf("the relay serving %s is running but left no address: %w", dir, err)
	}
	keys, err := auth.Open(filepath.Join(dir, "auth"))
	if err != nil {
		return err
	}
	connect := func(creds []byte) (*nats.Conn, error) {
		co, err := auth.CredsOption(creds)
		if err != nil {
			return nil, err
		}
		return nats.Connect(ri.NATSURL, co, nats.Name("relay command"))
	}
	return runAdmin(ctx, keys, ri.NATSURL, connect, fn)
}

func runAdmin(ctx context.Context, keys *auth.Keys, url string, connect func([]byte) (*nats.Conn, error),
	fn func(context.Context, *adminSession) error) error {
	adminCreds, err := keys.UserCreds("relay-command", nil, false)
	if err != nil {
		return err
	}
	sysCreds, err := keys.UserCreds("relay-command-sys", nil, true)
	if err != nil {
		return err
	}
	nc, err := connect(adminCreds)
	if err != nil {
		return fmt.Errorf("connect to relay: %w", err)
	}
	defer nc.Close()
	sys, err := connect(sysCreds)
	if err != nil {
		return fmt.Errorf("connect to relay (system): %w", err)
	}
	defer sys.Close()
	js, _ := jetstream.New(nc)
	if err := cjs.Provision(ctx, js, cjs.Options{}); err != nil {
		return err
	}
	return fn(ctx, &adminSession{Admin: &clinics.Admin{JS: js, Sys: sys, Keys: keys}, NATSURL: url})
}

// WithAdmin runs fn with operator access to the relay that owns dir, running
// (over NATS) or not (on an in-process node); the bench onboards with it.
func WithAdmin(ctx context.Context, dir string, fn func(context.Context, *clinics.Admin) error) error {
	return withAdmin(ctx, dir, func(ctx context.Context, s *adminSession) error { return fn(ctx, s.Admin) })
}
