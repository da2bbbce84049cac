package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clinicrelay/clinicrelay/relay"
	"github.com/clinicrelay/clinicrelay/services"
)

// smtpEnv may hold the SMTP URL, which has a password: a flag shows in ps.
const smtpEnv = "CLINICRELAY_SMTP_URL"

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer, demo bool) error {
	name := "serve"
	if demo {
		name = "demo"
	}
	fs := newFlags(name, stderr)
	var cfg relay.Config
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
	if cfg.NATSURL == "" && cfg.EncryptionKey == "" {
		cfg.Logger.Warn("the JetStream store is not encrypted at rest: pass --encryption-key-file or set " + keyEnv)
	}
	start := time.Now()
	r, err := relay.Start(ctx, cfg)
	if err != nil {
		return err
	}
	// Deferred calls run last first: HTTP stops (Serve returns), then the
	// demo agent and console, then connections drain and NATS stops.
	defer r.Shutdown()
	var d relay.Demo
	if demo {
		if d, err = r.StartDemo(ctx, filepath.Join(cfg.DataDir, "demo-agent"), *consoleAddr); err != nil {
			return err
		}
		defer d.Stop()
	}
	printURLs(stdout, r, demo, d, time.Since(start))
	return r.Serve(ctx)
}

func printURLs(w io.Writer, r *relay.Relay, demo bool, d relay.Demo, took time.Duration) {
	fmt.Fprintf(w, "relay ready in %s\n", took.Round(time.Millisecond))
	fmt.Fprintf(w, "  patients' site:  %s/\n", r.HTTPURL())
	fmt.Fprintf(w, "  JSON API:        %s/api/v1/clinics\n", r.HTTPURL())
	if u := r.AgentURL(); u != "" {
		fmt.Fprintf(w, "  NATS for agents: %s\n", u)
	}
	if demo {
		fmt.Fprintf(w, "  demo clinic:     %s/c/%s\n", r.HTTPURL(), relay.DemoClinic.ID)
		fmt.Fprintf(w, "  front desk:      http://%s/\n", d.ConsoleAddr)
		fmt.Fprintf(w, "  front desk sign-in: %s / %s\n", d.User, d.Password)
		fmt.Fprintf(w, "Request a time on the clinic page, confirm it at the front desk, watch the status page change.\n")
	}
	fmt.Fprintln(w, "Ctrl-C stops it.")
}

// abuseFlags adds the abuse flags to fs; the returned func checks them
// after parsing.
func abuseFlags(fs *flag.FlagSet, a *relay.Abuse) func() error {
	proxies := fs.String("trusted-proxies", "", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For gives the client IP "+
		"(rate limits count per client IP; behind a proxy that is not listed, every patient counts as the proxy)")
	on := fs.Bool("abuse-limits", true, "rate limits and the pending cap; false only for load tests")
	fs.IntVar(&a.MaxPending, "max-pending", services.DefaultMaxPending, "requests not yet final allowed per email and per phone per clinic")
	return func() error {
		a.Off = !*on
		if a.MaxPending < 1 {
			return fmt.Errorf("--max-pending must be at least 1: %w", errUsage)
		}
		for _, p := range strings.Split(*proxies, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			pr, err := netip.ParsePrefix(p)
			if err != nil {
				if addr, aerr := netip.ParseAddr(p); aerr == nil {
					pr = netip.PrefixFrom(addr, addr.BitLen())
				} else {
					return fmt.Errorf("--trusted-proxies: %q is not a CIDR or an IP: %w", p, errUsage)
				}
			}
			a.TrustedProxies = append(a.TrustedProxies, pr)
		}
		return nil
	}
}
