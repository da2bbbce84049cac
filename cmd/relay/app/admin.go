package app

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

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
	NATSURL string // where agents dial: the relay's --public-nats-url, else where it listens
}

// target is the relay a command acts on: its data dir, and how to trust
// its NATS listener when it has TLS.
type target struct {
	dir string
	// ca verifies the relay's certificate; by default the certificate the
	// running relay serves (its file, read from the data dir's run info)
	// and the system's roots.
	ca string
	// serverName is the name the certificate must cover; by default the
	// first name in the relay's certificate, as the command dials the
	// address it listens on (127.0.0.1), which a certificate rarely names.
	serverName string
}

// targetFlags adds --data, --ca and --server-name to fs.
func targetFlags(fs *flag.FlagSet) *target {
	t := &target{}
	fs.StringVar(&t.dir, "data", "./data", "relay data dir")
	fs.StringVar(&t.ca, "ca", "", "CA (PEM) that signed the running relay's NATS certificate (default: that certificate itself, and the system's roots)")
	fs.StringVar(&t.serverName, "server-name", "", "name the relay's NATS certificate covers (default: its first name)")
	return t
}

// withAdmin runs fn against the relay that owns t.dir: over NATS with
// operator creds when it is running, else on a temporary in-process node.
func withAdmin(ctx context.Context, t target, fn func(context.Context, *adminSession) error) error {
	dir := t.dir
	if err := CheckDataDir(dir); err != nil {
		return err
	}
	key, err := storeKey(dir, "", false)
	if err != nil {
		return err
	}
	n, err := node.Start(node.Config{DataDir: dir, EncryptionKey: key})
	if errors.Is(err, node.ErrRunning) {
		return withRunning(ctx, t, fn)
	}
	if err != nil {
		return err
	}
	defer n.Shutdown()
	connect := func(creds []byte) (*nats.Conn, error) { return n.Connect(creds) }
	url := DefaultNATSURL
	if ri, err := node.ReadRunInfo(dir); err == nil && ri.NATSURL != "" {
		url = cmp.Or(ri.PublicNATSURL, ri.NATSURL)
	}
	return runAdmin(ctx, n.Keys, url, connect, fn)
}

func withRunning(ctx context.Context, t target, fn func(context.Context, *adminSession) error) error {
	ri, err := node.ReadRunInfo(t.dir)
	if err != nil {
		return fmt.Errorf("the relay serving %s is running but left no address: %w", t.dir, err)
	}
	keys, err := auth.Open(filepath.Join(t.dir, "auth"))
	if err != nil {
		return err
	}
	opts := []nats.Option{nats.Name("relay command")}
	if strings.HasPrefix(ri.NATSURL, "tls://") {
		tc, err := t.tlsConfig(ri.TLSCert)
		if err != nil {
			return err
		}
		opts = append(opts, nats.Secure(tc))
	}
	connect := func(creds []byte) (*nats.Conn, error) {
		co, err := auth.CredsOption(creds)
		if err != nil {
			return nil, err
		}
		nc, err := nats.Connect(ri.NATSURL, append(opts, co)...)
		return nc, explainTLS(err)
	}
	return runAdmin(ctx, keys, cmp.Or(ri.PublicNATSURL, ri.NATSURL), connect, fn)
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
	return withAdmin(ctx, target{dir: dir}, func(ctx context.Context, s *adminSession) error { return fn(ctx, s.Admin) })
}

// tlsConfig trusts t.ca, or the relay's own certificate file cert and the
// system's roots, and expects t.serverName or the certificate's first name.
func (t target) tlsConfig(cert string) (*tls.Config, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	file := cmp.Or(t.ca, cert)
	if file == "" {
		return nil, errors.New("the running relay serves NATS over TLS but did not say with which certificate: pass --ca FILE")
	}
	caPEM, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("--ca %s: no PEM certificate in it", file)
	}
	name := t.serverName
	if name == "" && cert != "" {
		certPEM := caPEM
		if file != cert {
			certPEM, _ = os.ReadFile(cert)
		}
		name = certName(certPEM)
	}
	return &tls.Config{RootCAs: roots, ServerName: name, MinVersion: tls.VersionTLS12}, nil
}

// certName is the first name the leaf of a PEM certificate chain covers: a
// DNS name, else an IP address ("" if none).
func certName(b []byte) string {
	block, _ := pem.Decode(b)
	if block == nil {
		return ""
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return ""
	}
	switch {
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.IPAddresses) > 0:
		return c.IPAddresses[0].String()
	}
	return ""
}

// explainTLS names a failed connection in words an operator can act on.
func explainTLS(err error) error {
	if p := auth.ConnectProblem(err, "pass --server-name NAME"); p != "" {
		return fmt.Errorf("%s: %w", p, err)
	}
	return err
}
