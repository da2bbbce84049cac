package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/agent"
	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/jetstream/clinics"
	"github.com/clinicrelay/clinicrelay/services"
)

// Demo clinic shown by `relay demo`.
var demoClinic = services.Clinic{ID: "demo", Name: "Demo Family Clinic", TimeZone: "America/Toronto"}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer, demo bool) error {
	name := "serve"
	if demo {
		name = "demo"
	}
	fs := newFlags(name, stderr)
	var cfg Config
	fs.StringVar(&cfg.DataDir, "data", "./data", "data dir (keys, JetStream store)")
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "web front listen address")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "127.0.0.1:4222", "NATS listen address for agents and the nats CLI")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "use an existing NATS server or cluster instead of the embedded one")
	fs.StringVar(&cfg.PublicNATSURL, "public-nats-url", "", "where clinics' agents dial NATS, e.g. tls://relay.example.org:4222 (default: the listen address), printed by relay clinic add")
	fs.StringVar(&cfg.CredsFile, "creds", "", "creds file for --nats-url")
	fs.IntVar(&cfg.Replicas, "replicas", 1, "stream replicas (3 on a cluster)")
	consoleAddr := fs.String("console", "127.0.0.1:8081", "demo only: the demo clinic's front-desk console")
	keyFile := fs.String("encryption-key-file", "", "encrypt the JetStream store at rest with the key in FILE (or set "+keyEnv+
		"; demo generates DATA/"+demoKeyFile+")")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "certificate (PEM) of the NATS listener: agents then connect over TLS only")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "its private key (PEM)")
	fs.StringVar(&cfg.HTTPSCert, "https-cert", "", "certificate (PEM) of the web front: it then serves HTTPS only")
	fs.StringVar(&cfg.HTTPSKey, "https-key", "", "its private key (PEM)")
	requireTLS := fs.Bool("require-tls", false, "refuse to start unless NATS and HTTP both have TLS")
	fs.StringVar(&cfg.Notify.SMTPURL, "smtp-url", os.Getenv(smtpEnv), "email notices through smtp://user:pass@host:port (STARTTLS required but on localhost), smtps://, or smtp+insecure:// (clear text allowed); or set "+smtpEnv+"; none: no email")
	fs.StringVar(&cfg.Notify.SMTPFrom, "smtp-from", "", "the notices' From address, e.g. \"Clinic Relay <noreply@example.org>\"")
	fs.StringVar(&cfg.Notify.PublicURL, "public-url", "", "the web front's URL as patients reach it, for links in emails (default: from --http)")
	abuse := abuseFlags(fs, &cfg.Abuse)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := abuse(); err != nil {
		return err
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") || (cfg.HTTPSCert == "") != (cfg.HTTPSKey == "") {
		return fmt.Errorf("--tls-cert goes with --tls-key, and --https-cert with --https-key: %w", errUsage)
	}
	if *requireTLS && (cfg.HTTPSCert == "" || cfg.TLSCert == "" && cfg.NATSURL == "" ||
		cfg.NATSURL != "" && !strings.HasPrefix(cfg.NATSURL, "tls://")) {
		return fmt.Errorf("--require-tls needs --https-cert/--https-key, and --tls-cert/--tls-key for the embedded NATS or a tls:// --nats-url")
	}
	if cfg.CredsFile != "" && cfg.NATSURL == "" {
		return fmt.Errorf("--creds goes with --nats-url (the embedded node makes its own): %w", errUsage)
	}
	if demo && cfg.NATSURL != "" {
		return fmt.Errorf("demo runs on the embedded NATS; drop --nats-url")
	}
	if cfg.Replicas < 1 || cfg.Replicas > 5 {
		return fmt.Errorf("--replicas must be 1 to 5")
	}
	if cfg.NATSURL == "" {
		if st, err := os.Stat(cfg.DataDir); err == nil && !st.IsDir() {
			return fmt.Errorf("data dir %s is not a directory", cfg.DataDir)
		}
		var err error
		if cfg.EncryptionKey, err = storeKey(cfg.DataDir, *keyFile, demo); err != nil {
			return err
		}
	} else if *keyFile != "" {
		return fmt.Errorf("--encryption-key-file is for the embedded NATS; an existing server encrypts its own store: %w", errUsage)
	}
	cfg.Logger = logger(stderr)
	start := time.Now()
	r, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	// Deferred calls run last first: HTTP stops (Serve returns), then the
	// demo agent and console, then connections drain and NATS stops.
	defer r.Shutdown()
	if demo {
		addr, stop, err := r.StartDemo(ctx, filepath.Join(cfg.DataDir, "demo-agent"), *consoleAddr)
		if err != nil {
			return err
		}
		defer stop()
		*consoleAddr = addr
	}
	printURLs(stdout, r, demo, *consoleAddr, time.Since(start))
	return r.Serve(ctx)
}

func printURLs(w io.Writer, r *Relay, demo bool, consoleAddr string, took time.Duration) {
	fmt.Fprintf(w, "relay ready in %s\n", took.Round(time.Millisecond))
	fmt.Fprintf(w, "  patients' site:  %s/\n", r.HTTPURL())
	fmt.Fprintf(w, "  JSON API:        %s/api/v1/clinics\n", r.HTTPURL())
	if u := r.AgentURL(); u != "" {
		fmt.Fprintf(w, "  NATS for agents: %s\n", u)
	}
	if demo {
		fmt.Fprintf(w, "  demo clinic:     %s/c/%s\n", r.HTTPURL(), demoClinic.ID)
		fmt.Fprintf(w, "  front desk:      http://%s/\n", consoleAddr)
		fmt.Fprintf(w, "Request a time on the clinic page, confirm it at the front desk, watch the status page change.\n")
	}
	fmt.Fprintln(w, "Ctrl-C stops it.")
}

// Admin returns an operator handle on the embedded node.
func (r *Relay) Admin(ctx context.Context) (*clinics.Admin, error) {
	if r.Node == nil {
		return nil, fmt.Errorf("admin needs the embedded node")
	}
	sysCreds, err := r.Node.Keys.UserCreds("relay-sys", nil, true)
	if err != nil {
		return nil, err
	}
	sys, err := r.Node.Connect(sysCreds)
	if err != nil {
		return nil, err
	}
	r.conns = append(r.conns, sys)
	adminCreds, err := r.Node.Keys.UserCreds("relay-admin", nil, false)
	if err != nil {
		return nil, err
	}
	nc, err := r.Node.Connect(adminCreds)
	if err != nil {
		return nil, err
	}
	r.conns = append(r.conns, nc)
	js, _ := jetstream.New(nc)
	return &clinics.Admin{JS: js, Sys: sys, Keys: r.Node.Keys}, nil
}

// StartDemo onboards the demo clinic (once) and runs its agent on the
// console connector in this process, dialling NATS like a real agent.
func (r *Relay) StartDemo(ctx context.Context, dir, consoleAddr string) (addr string, stop func(), err error) {
	// Listen first: a console address in use stops the demo with a clear
	// error, and the address printed is the one bound (port 0 picks one).
	ln, err := net.Listen("tcp", consoleAddr)
	if err != nil {
		return "", nil, fmt.Errorf("demo console: %w (pass --console ADDR)", err)
	}
	stop, err = r.startDemo(ctx, dir, ln)
	if err != nil {
		ln.Close()
		return "", nil, err
	}
	return ln.Addr().String(), stop, nil
}

func (r *Relay) startDemo(ctx context.Context, dir string, ln net.Listener) (stop func(), err error) {
	a, err := r.Admin(ctx)
	if err != nil {
		return nil, err
	}
	c := demoClinic
	c.CreatedAt = time.Now().UTC()
	if _, err := a.Add(ctx, c); err != nil && !strings.Contains(err.Error(), "already exists") {
		return nil, err
	}
	creds, err := r.AgentCreds(c.ID)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, old, err := agent.LoadSealKeys(filepath.Join(dir, "seal.nk"))
	if err != nil {
		return nil, err
	}
	pub, _ := key.PublicKey()
	con, err := console.Open(console.Config{Path: filepath.Join(dir, "console.db"), Addr: ln.Addr().String(), SealKey: pub,
		Logger: r.log.With("component", "console")})
	if err != nil {
		return nil, err
	}
	if err := con.SeedDemo(ctx); err != nil {
		con.Close()
		return nil, err
	}
	ag, err := agent.New(agent.Config{NATSURL: r.NATSURL(), Creds: creds, Logger: r.log.With("component", "agent"),
		SealKey: key, OldSealKeys: old}, con)
	if err != nil {
		con.Close()
		return nil, err
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { con.Serve(actx, ln); done <- struct{}{} }()
	go func() { ag.Run(actx); done <- struct{}{} }()
	return func() { cancel(); <-done; <-done; con.Close() }, nil
}
