// Package app is the clinic-agent program behind cmd/clinic-agent: it dials
// out to the relay and runs the clinic's connector (the front-desk console).
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

	"github.com/clinicrelay/clinicrelay/agent"
	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/cmd/internal/command"
)

const usage = `usage:
  clinic-agent run --nats-url URL --creds FILE [--data DIR] [--console ADDR] [--console-hosts NAMES]
                   [--ca FILE] [--require-tls]
  clinic-agent rotate-key [--data DIR]
`

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
}

// SealKeyFile holds the clinic's seal keys in the agent's data dir.
const SealKeyFile = "seal.nk"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "rotate-key" {
		return rotateKey(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "run" {
		return errUsage
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "the relay's NATS URL (outbound only)")
	fs.StringVar(&cfg.CredsFile, "creds", "", "the clinic's creds file from `relay clinic add`")
	fs.StringVar(&cfg.DataDir, "data", "./agent-data", "local store of the console connector")
	fs.StringVar(&cfg.ConsoleAddr, "console", "127.0.0.1:8081", "front-desk console listen address (clinic LAN)")
	fs.StringVar(&cfg.CAFile, "ca", "", "CA certificate (PEM) that signed the relay's TLS certificate (default: system roots)")
	fs.BoolVar(&cfg.RequireTLS, "require-tls", false, "refuse a relay that does not offer TLS")
	hosts := fs.String("console-hosts", "", "comma-separated host names the console answers to besides IP addresses and localhost")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
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
	log := slog.New(slog.NewTextHandler(stderr, nil))
	return Run(ctx, cfg, log, stdout)
}

// Run runs the agent with the console connector until ctx ends.
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
	pub, _ := key.PublicKey()
	con, err := console.Open(console.Config{SealKey: pub, Path: filepath.Join(cfg.DataDir, "console.db"), Addr: cfg.ConsoleAddr,
		AllowedHosts: cfg.ConsoleHosts, Logger: log.With("component", "console")})
	if err != nil {
		return err
	}
	defer con.Close()
	ag, err := agent.New(agent.Config{NATSURL: cfg.NATSURL, Creds: creds, Logger: log, CAFile: cfg.CAFile,
		RequireTLS: cfg.RequireTLS, SealKey: key, OldSealKeys: old}, con)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "clinic-agent for %s: front desk at http://%s/, relay %s\n", ag.Clinic(), cfg.ConsoleAddr, cfg.NATSURL)
	// The console and the agent live and die together: the first to fail
	// (a console port in use, bad creds) stops the other.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- con.Run(cctx) }()
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
