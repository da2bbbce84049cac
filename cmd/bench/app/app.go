// Package app is the benchmark behind cmd/bench. It runs the relay as a child
// process on an embedded NATS, clinic agents on the console connector in this
// process, and a load generator on Go's HTTP client with keep-alive; beside
// each figure it measures the engine underneath on the same machine in the
// same run (raw JetStream publishes, a bare Echo handler).
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/cmd/internal/command"
	relayapp "github.com/clinicrelay/clinicrelay/cmd/relay/app"
	"github.com/clinicrelay/clinicrelay/jetstream/clinics"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

const usage = `usage:
  bench [--quick] [--json] [--step DURATION] [--clinics N] [--agents N] [--keep DIR]
  bench flood [--keys N] [--kib N] [--json] [--keep DIR]
`

// Config is the bench's flags.
type Config struct {
	Quick   bool          // a run under a minute: short steps, a smaller fleet
	JSON    bool          // print the report as JSON instead of a table
	Step    time.Duration // how long each load step measures
	Clinics int           // scale: clinics onboarded
	Agents  int           // scale: of those, clinics with a connected agent
	Dir     string        // where data goes (default: a temp dir, removed after)
}

// Main runs the command line and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	switch os.Getenv(roleEnv) {
	case "relay":
		// CLINICRELAY_BENCH_RELAY_PROFILE=FILE profiles the relay under test.
		if path := os.Getenv("CLINICRELAY_BENCH_RELAY_PROFILE"); path != "" {
			if f, err := os.Create(fmt.Sprintf("%s.%d", path, os.Getpid())); err == nil {
				pprof.StartCPUProfile(f)
				defer f.Close()
				defer pprof.StopCPUProfile()
			}
		}
		return relayapp.Main(ctx, args, stdout, stderr)
	case "echo":
		return command.Exit("bench echo", usage, serveEcho(ctx, args, stdout), stderr)
	}
	if len(args) > 0 && args[0] == "flood" {
		return command.Exit("bench flood", floodUsage, runFlood(ctx, args[1:], stdout, stderr), stderr)
	}
	return command.Exit("bench", usage, run(ctx, args, stdout, stderr), stderr)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	fs.BoolVar(&cfg.Quick, "quick", false, "a run under a minute (short steps, 1,000 clinics / 100 agents)")
	fs.BoolVar(&cfg.JSON, "json", false, "print JSON")
	fs.DurationVar(&cfg.Step, "step", 0, "measured time per load step (default 5s, 1s with --quick)")
	fs.IntVar(&cfg.Clinics, "clinics", 0, "scale: clinics onboarded (default 10000, 1000 with --quick)")
	fs.IntVar(&cfg.Agents, "agents", 0, "scale: clinics with a connected agent (default 1000, 100 with --quick)")
	fs.StringVar(&cfg.Dir, "keep", "", "keep data and logs in DIR instead of a temp dir")
	cpuProfile := fs.String("cpuprofile", "", "write the bench process's CPU profile (agents, load) to FILE")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return command.ErrUsage
	}
	cfg.defaults()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if cfg.Agents > cfg.Clinics || cfg.Agents < 1 || cfg.Step < 100*time.Millisecond {
		return fmt.Errorf("need 1 <= --agents <= --clinics and --step >= 100ms: %w", command.ErrUsage)
	}
	dir := cfg.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "clinicrelay-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	progress := stderr
	rep := newReport(cfg, args)
	b := &bench{cfg: cfg, dir: dir, rep: rep, progress: progress,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxIdleConns: 512}}}
	if err := b.core(ctx); err != nil {
		return err
	}
	if err := b.scale(ctx); err != nil {
		return err
	}
	rep.judge()
	if cfg.JSON {
		return rep.writeJSON(stdout)
	}
	rep.writeTable(stdout)
	return nil
}

func (c *Config) defaults() {
	if c.Step == 0 {
		c.Step = 5 * time.Second
		if c.Quick {
			c.Step = time.Second
		}
	}
	if c.Clinics == 0 {
		c.Clinics = 10_000
		if c.Quick {
			c.Clinics = 1_000
		}
	}
	if c.Agents == 0 {
		c.Agents = 1_000
		if c.Quick {
			c.Agents = 100
		}
	}
}

type bench struct {
	cfg      Config
	dir      string
	rep      *Report
	progress io.Writer
	http     *http.Client
	relay    *relayProc
	// readsConsole is the front desk of the clinic whose slots are read.
	readsConsole *console.Console
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "bench: "+format+"\n", args...)
}

// relayProc is the relay under test, a child process on its data dir.
type relayProc struct {
	*child
	dir, httpAddr, natsAddr string
	abuseLimits             bool // as deployed; off for load (one IP and one patient post everything)
}

func (r *relayProc) url() string     { return "http://" + r.httpAddr }
func (r *relayProc) natsURL() string { return "nats://" + r.natsAddr }

// startRelay starts (or restarts, on the same ports) the relay on dir and
// returns how long it took to serve.
func startRelay(ctx context.Context, r *relayProc) (time.Duration, error) {
	var err error
	if r.httpAddr == "" {
		if r.httpAddr, err = freeAddr(); err != nil {
			return 0, err
		}
		if r.natsAddr, err = freeAddr(); err != nil {
			return 0, err
		}
	}
	t0 := time.Now()
	r.child, err = startChild("relay", r.dir+".log", "serve", "--data", r.dir, "--http", r.httpAddr, "--nats-listen", r.natsAddr,
		fmt.Sprintf("--abuse-limits=%t", r.abuseLimits))
	if err != nil {
		return 0, err
	}
	return r.awaitHTTP(ctx, r.url()+"/healthz", t0, 5*time.Minute)
}

// core measures the request path, reads, latency, freshness and drain on
// one relay with a few busy clinics.
func (b *bench) core(ctx context.Context) error {
	b.relay = &relayProc{dir: filepath.Join(b.dir, "core")}
	if _, err := startRelay(ctx, b.relay); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	defer b.relay.stop(time.Minute)
	f := &fleet{natsURL: b.relay.natsURL(), dir: filepath.Join(b.dir, "agents-core")}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return err
	}
	defer f.close()
	return relayapp.WithAdmin(ctx, b.relay.dir, func(ctx context.Context, a *clinics.Admin) error {
		steps := []func(context.Context, *clinics.Admin, *fleet) error{b.ingestion, b.reads, b.freshness, b.drain}
		for _, step := range steps {
			if err := step(ctx, a, f); err != nil {
				return err
			}
		}
		return nil
	})
}

// awaitSlots waits until the relay offers at least n slots of clinic.
func (b *bench) awaitSlots(ctx context.Context, clinic string, days, n int) ([]slot, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s, err := freeSlots(ctx, b.http, b.relay.url(), clinic, days)
		if err == nil && len(s) >= n {
			return s, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("clinic %s offers %d slots, want %d: %v", clinic, len(s), n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamLeft counts what REQUESTS still holds for clinic.
func streamLeft(ctx context.Context, js jetstream.JetStream, clinic string) (uint64, error) {
	s, err := js.Stream(ctx, subjects.StreamRequests)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subjects.ClinicFilter(clinic)))
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n, nil
}

var errNothingLeft = errors.New("slot pool exhausted")

func clinicNamed(id string) services.Clinic {
	return services.Clinic{ID: id, Name: "Bench clinic " + id, TimeZone: zone}
}

func trimErr(err error) string {
	s := err.Error()
	if i := strings.Index(s, "\n"); i >= 0 {
		s = s[:i]
	}
	return s
}
