// Package app is the clinic-agent program behind cmd/clinic-agent: it dials
// out to the relay and runs the clinic's connector: the front-desk console
// (default) or a FHIR R4 practice-management system.
package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clinicrelay/clinicrelay/agent"
	"github.com/clinicrelay/clinicrelay/agent/connector"
	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/agent/fhir"
	"github.com/clinicrelay/clinicrelay/cmd/internal/command"
)

const usage = `usage:
  clinic-agent run --nats-url URL --creds FILE [--data DIR] [--console ADDR] [--console-hosts NAMES]
                   [--ca FILE] [--require-tls]
                   [--connector fhir --fhir-url URL [--fhir-token FILE | --fhir-basic-user USER
                    --fhir-basic-password-file FILE] [--fhir-poll DURATION]]
                   [--key-file FILE] [--console-cert FILE --console-cert-key FILE]
  clinic-agent rotate-key [--data DIR]
  clinic-agent console-key --out FILE
` + userUsage

// errUsage makes Main exit 2 with the usage text.
var errUsage = command.ErrUsage

// Main runs the command line and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return command.Exit("clinic-agent", usage, run(ctx, args, stdout, stderr), stderr)
}

// Config is `clinic-agent run`'s flags.
type Config struct {
	NATSURL     string
	CredsFile   string
	DataDir     string
	ConsoleAddr string
	// ConsoleHosts are the host names staff use to reach the console.
	ConsoleHosts []string
	CAFile       string // verifies the relay's TLS certificate (default: system roots)
	RequireTLS   bool
	// Connector is "console" (default) or "fhir".
	Connector string
	// FHIR configures the fhir connector (its secrets read from files).
	FHIR fhir.Config
	// ConsoleKey seals the console's store (console.Config.Key); nil: in clear.
	ConsoleKey []byte
	// ConsoleCert and ConsoleCertKey make the console serve HTTPS.
	ConsoleCert, ConsoleCertKey string
}

// SealKeyFile holds the clinic's seal keys in the agent's data dir.
const SealKeyFile = "seal.nk"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "rotate-key" {
		return rotateKey(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "user" {
		return user(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "console-key" {
		return consoleKey(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "run" {
		return errUsage
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "the relay's NATS URL (outbound only)")
	fs.StringVar(&cfg.CredsFile, "creds", "", "the clinic's creds file written by relay clinic add")
	fs.StringVar(&cfg.DataDir, "data", "./agent-data", "the agent's data dir: its seal keys, and the console connector's store")
	fs.StringVar(&cfg.ConsoleAddr, "console", "127.0.0.1:8081", "front-desk console listen address (clinic LAN)")
	fs.StringVar(&cfg.CAFile, "ca", "", "CA certificate (PEM) that signed the relay's TLS certificate (default: system roots)")
	fs.BoolVar(&cfg.RequireTLS, "require-tls", false, "refuse a relay that does not offer TLS")
	hosts := fs.String("console-hosts", "", "comma-separated host names the console answers to besides IP addresses and localhost")
	fs.StringVar(&cfg.Connector, "connector", "console", "the clinic's system: console (front-desk page) or fhir (a FHIR R4 PMS)")
	fs.StringVar(&cfg.FHIR.URL, "fhir-url", "", "the PMS's FHIR R4 base URL (with --connector fhir)")
	tokenFile := fs.String("fhir-token", "", "file holding a bearer token for the PMS")
	fs.StringVar(&cfg.FHIR.BasicUser, "fhir-basic-user", "", "HTTP basic user for the PMS")
	passFile := fs.String("fhir-basic-password-file", "", "file holding the HTTP basic password for the PMS")
	fs.DurationVar(&cfg.FHIR.PollEvery, "fhir-poll", 15*time.Second, "how often the PMS is asked what changed")
	fs.StringVar(&cfg.ConsoleCert, "console-cert", "", "certificate (PEM) of the console: it then serves HTTPS only")
	fs.StringVar(&cfg.ConsoleCertKey, "console-cert-key", "", "its private key (PEM)")
	keyFile := fs.String("key-file", "", "the console store's key (made by clinic-agent console-key), best kept off this disk; or set "+console.KeyEnv)
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	if err := fhirFlags(&cfg, *tokenFile, *passFile); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if cfg.NATSURL == "" || cfg.CredsFile == "" {
		return fmt.Errorf("--nats-url and --creds are required: %w", errUsage)
	}
	if *hosts != "" {
		cfg.ConsoleHosts = strings.Split(*hosts, ",")
	}
	if (cfg.ConsoleCert == "") != (cfg.ConsoleCertKey == "") {
		return fmt.Errorf("--console-cert goes with --console-cert-key: %w", errUsage)
	}
	var err error
	if cfg.ConsoleKey, err = readConsoleKey(*keyFile); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	return Run(ctx, cfg, log, stdout)
}

// fhirFlags checks the connector flags and reads the PMS secrets from files.
func fhirFlags(cfg *Config, tokenFile, passFile string) error {
	switch cfg.Connector {
	case "console":
		if cfg.FHIR.URL != "" || tokenFile != "" || cfg.FHIR.BasicUser != "" || passFile != "" {
			return fmt.Errorf("--fhir-* flags need --connector fhir: %w", errUsage)
		}
		return nil
	case "fhir":
	default:
		return fmt.Errorf("--connector must be console or fhir: %w", errUsage)
	}
	if cfg.FHIR.URL == "" {
		return fmt.Errorf("--connector fhir needs --fhir-url: %w", errUsage)
	}
	if tokenFile != "" && cfg.FHIR.BasicUser != "" {
		return fmt.Errorf("--fhir-token and --fhir-basic-user exclude each other: %w", errUsage)
	}
	read := func(name string) (string, error) {
		b, err := os.ReadFile(name)
		return strings.TrimSpace(string(b)), err
	}
	var err error
	if tokenFile != "" {
		if cfg.FHIR.Token, err = read(tokenFile); err != nil {
			return fmt.Errorf("--fhir-token: %w", err)
		}
	}
	if cfg.FHIR.BasicUser != "" {
		if passFile == "" {
			return fmt.Errorf("--fhir-basic-user needs --fhir-basic-password-file: %w", errUsage)
		}
		if cfg.FHIR.BasicPassword, err = read(passFile); err != nil {
			return fmt.Errorf("--fhir-basic-password-file: %w", err)
		}
	}
	return nil
}

// Run runs the agent with its connector until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger, stdout io.Writer) error {
	creds, err := os.ReadFile(cfg.CredsFile)
	if err != nil {
		return fmt.Errorf("creds: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	key, old, err := agent.LoadSealKeys(filepath.Join(cfg.DataDir, SealKeyFile))
	if err != nil {
		return err
	}
	var conn interface {
		connector.Connector
		Run(context.Context) error
	}
	where := ""
	if cfg.Connector == "fhir" {
		cfg.FHIR.Logger = log
		fc, err := fhir.New(cfg.FHIR)
		if err != nil {
			return err
		}
		conn, where = fc, "PMS "+cfg.FHIR.URL
	} else {
		pub, _ := key.PublicKey()
		if cfg.ConsoleKey == nil {
			log.Warn("the console's store keeps patient data in clear on this disk: pass --key-file FILE or set " + console.KeyEnv)
		}
		con, err := console.Open(console.Config{SealKey: pub, Path: filepath.Join(cfg.DataDir, "console.db"), Addr: cfg.ConsoleAddr,
			AllowedHosts: cfg.ConsoleHosts, Logger: log.With("component", "console"), Key: cfg.ConsoleKey,
			TLSCert: cfg.ConsoleCert, TLSKey: cfg.ConsoleCertKey})
		if err != nil {
			return err
		}
		defer con.Close()
		scheme := "http"
		if cfg.ConsoleCert != "" {
			scheme = "https"
		}
		conn, where = con, "front desk at "+scheme+"://"+cfg.ConsoleAddr+"/"
	}
	ag, err := agent.New(agent.Config{NATSURL: cfg.NATSURL, Creds: creds, Logger: log, CAFile: cfg.CAFile,
		RequireTLS: cfg.RequireTLS, SealKey: key, OldSealKeys: old}, conn)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "clinic-agent for %s: %s, relay %s\n", ag.Clinic(), where, cfg.NATSURL)
	// The connector and the agent live and die together: the first to fail
	// (a console port in use, bad creds) stops the other.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- conn.Run(cctx) }()
	go func() { errc <- ag.Run(cctx) }()
	err = <-errc
	cancel()
	if err2 := <-errc; err == nil {
		err = err2
	}
	return err
}

// rotateKey makes a new seal key current; requests sealed to the former ones
// still open. The agent publishes the new key when it next starts.
func rotateKey(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rotate-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./agent-data", "the agent's data dir")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	pub, err := agent.RotateSealKey(filepath.Join(*data, SealKeyFile))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "new seal key %s; restart the agent to publish it (requests sealed to the old key still open)\n", pub)
	return nil
}

// readConsoleKey is the console store's key from file, else from
// $CLINICRELAY_CONSOLE_KEY, else nil.
func readConsoleKey(file string) ([]byte, error) {
	v := os.Getenv(console.KeyEnv)
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--key-file: %w", err)
		}
		v = string(b)
	}
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	k, err := console.ParseKey(v)
	if err != nil {
		return nil, fmt.Errorf("console store key: %w", err)
	}
	return k, nil
}

// consoleKey writes a new console store key to --out (mode 0600), never
// over an existing file: a lost key is a lost store.
func consoleKey(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("console-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "where to write the key: best on storage kept off the clinic PC's disk")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *out == "" {
		return errUsage
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if _, err := fmt.Fprintln(f, console.NewKey()); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "console store key written to %s; run the agent with --key-file %s, and keep a copy: without it the store cannot be read\n", *out, *out)
	return nil
}
