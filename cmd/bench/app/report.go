package app

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Machine is where the numbers come from.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPU      string `json:"cpu"`
	MemGiB   int    `json:"mem_gib"`
	OS       string `json:"os"`
	Go       string `json:"go"`
	NATS     string `json:"nats_server"`
	NATSGo   string `json:"nats_go"`
	Command  string `json:"command"`
	Finished string `json:"finished"`
}

// Pair is a clinicrelay figure beside the engine's at equal concurrency.
type Pair struct {
	Clinicrelay Stats   `json:"clinicrelay"`
	Baseline    Stats   `json:"baseline"`
	Ratio       float64 `json:"ratio"` // of req/s
}

func pair(got, base Stats) Pair {
	p := Pair{Clinicrelay: got, Baseline: base}
	if base.PerSec > 0 {
		p.Ratio = got.PerSec / base.PerSec
	}
	return p
}

// DrainResult is an agent catching up with a backlog.
type DrainResult struct {
	Requests     int     `json:"requests"`
	QueueSeconds float64 `json:"queue_seconds"` // to accept them all, agent away
	Seconds      float64 `json:"seconds"`       // agent start to the last stored
	PerSec       float64 `json:"per_sec"`
}

// Target is one promise and whether this run kept it.
type Target struct {
	Name string  `json:"name"`
	Want string  `json:"want"`
	Got  float64 `json:"got"`
	Unit string  `json:"unit"`
	Met  bool    `json:"met"`
}

// Report is everything one run measured.
type Report struct {
	Machine         Machine        `json:"machine"`
	Ingestion       []Pair         `json:"ingestion"` // baseline: raw JetStream sync publish
	IngestionErrors map[string]int `json:"ingestion_errors,omitempty"`
	// Floor is a booking's own JetStream writes alone (floorBooker) beside
	// the same raw baseline: what the request path could reach at best.
	Floor     []Pair      `json:"floor"`
	Reads     []Pair      `json:"reads"` // baseline: bare Echo, same bytes
	ReadBytes int         `json:"read_bytes"`
	Stored    Stats       `json:"accepted_to_stored"`
	Fresh     Stats       `json:"freshness"`
	Drain     DrainResult `json:"drain"`
	Scale     ScaleResult `json:"scale"`
	Targets   []Target    `json:"targets"`
}

func newReport(cfg Config, args []string) *Report {
	cmd := strings.TrimSpace("go run ./cmd/bench " + strings.Join(args, " "))
	return &Report{Machine: Machine{CPUs: runtime.NumCPU(), CPU: cpuModel(), MemGiB: memGiB(),
		OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(), NATS: server.VERSION, NATSGo: nats.Version,
		Command: cmd}}
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memGiB() int {
	b, _ := os.ReadFile("/proc/meminfo")
	var kb int
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			fmt.Sscanf(strings.TrimPrefix(l, "MemTotal:"), "%d", &kb)
		}
	}
	return (kb + 512*1024) / (1024 * 1024)
}

// judge sets the targets of issues 3 and 15 against this run.
func (r *Report) judge() {
	r.Machine.Finished = time.Now().UTC().Format(time.RFC3339)
	at := func(ps []Pair, clients int) Pair {
		for _, p := range ps {
			if p.Clinicrelay.Clients == clients {
				return p
			}
		}
		return Pair{}
	}
	minRatio := func(ps []Pair) float64 {
		m := 0.0
		for i, p := range ps {
			if i == 0 || p.Ratio < m {
				m = p.Ratio
			}
		}
		return m
	}
	in64 := at(r.Ingestion, 64)
	t := func(name, want, unit string, got float64, met bool) {
		r.Targets = append(r.Targets, Target{Name: name, Want: want, Got: got, Unit: unit, Met: met})
	}
	t("ingestion ÷ raw JetStream, lowest of 1/16/64 clients", "≥ 0.25", "", minRatio(r.Ingestion), minRatio(r.Ingestion) >= 0.25)
	t("ingestion at 64 clients", "≥ 2000", "req/s", in64.Clinicrelay.PerSec, in64.Clinicrelay.PerSec >= 2000)
	t("ingestion p99 at 64 clients", "≤ 25", "ms", in64.Clinicrelay.P99ms, in64.Clinicrelay.P99ms > 0 && in64.Clinicrelay.P99ms <= 25)
	t("slot reads ÷ bare Echo, lowest of 1/16/64 clients", "≥ 0.60", "", minRatio(r.Reads), minRatio(r.Reads) >= 0.60)
	t("accepted → stored p99", "≤ 50", "ms", r.Stored.P99ms, r.Stored.OK > 0 && r.Stored.P99ms <= 50)
	t("freshness p99", "≤ 250", "ms", r.Fresh.P99ms, r.Fresh.OK > 0 && r.Fresh.P99ms <= 250)
	t("drain", "≥ 2000", "req/s", r.Drain.PerSec, r.Drain.PerSec >= 2000)
	s := r.Scale
	full := s.Clinics >= 10_000 && s.Agents >= 1_000
	t(fmt.Sprintf("RSS, %d clinics / %d agents (target at 10,000/1,000)", s.Clinics, s.Agents), "≤ 1024", "MiB", s.PeakMiB, full && s.PeakMiB <= 1024)
	t("startup", "≤ 10", "s", s.StartupSec, full && s.StartupSec <= 10)
	t("shutdown", "≤ 10", "s", s.ShutdownSec, full && s.ShutdownSec <= 10)
}

func (r *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *Report) writeTable(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "clinicrelay bench — %s; %d CPUs (%s), %d GiB; %s; nats-server %s, nats.go %s; %s\n\n",
		m.Command, m.CPUs, m.CPU, m.MemGiB, m.Go, m.NATS, m.NATSGo, m.Finished)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "request ingestion\tclients\treq/s\tp50 ms\tp99 ms\traw JetStream req/s\tp50 ms\tp99 ms\tratio\t")
	for _, p := range r.Ingestion {
		c, b := p.Clinicrelay, p.Baseline
		fmt.Fprintf(tw, "POST /requests\t%d\t%.0f\t%.2f\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t\n", c.Clients, c.PerSec, c.P50ms, c.P99ms,
			b.PerSec, b.P50ms, b.P99ms, p.Ratio)
	}
	for _, p := range r.Floor {
		c, b := p.Clinicrelay, p.Baseline
		fmt.Fprintf(tw, "a booking's writes alone\t%d\t%.0f\t%.2f\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t\n", c.Clients, c.PerSec, c.P50ms,
			c.P99ms, b.PerSec, b.P50ms, b.P99ms, p.Ratio)
	}
	fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t")
	fmt.Fprintf(tw, "slot reads (%d B)\tclients\treq/s\tp50 ms\tp99 ms\tbare Echo req/s\tp50 ms\tp99 ms\tratio\t\n", r.ReadBytes)
	for _, p := range r.Reads {
		c, b := p.Clinicrelay, p.Baseline
		fmt.Fprintf(tw, "GET /slots\t%d\t%.0f\t%.2f\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t\n", c.Clients, c.PerSec, c.P50ms, c.P99ms,
			b.PerSec, b.P50ms, b.P99ms, p.Ratio)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintf(w, "sent → stored by the agent (200 req/s, %d requests): p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		r.Stored.OK, r.Stored.P50ms, r.Stored.P99ms, r.Stored.Maxms)
	fmt.Fprintf(w, "console change → slots API (%d changes): p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		r.Fresh.OK, r.Fresh.P50ms, r.Fresh.P99ms, r.Fresh.Maxms)
	d := r.Drain
	fmt.Fprintf(w, "drain: %d queued in %.1f s while the agent was away; drained in %.2f s = %.0f req/s\n",
		d.Requests, d.QueueSeconds, d.Seconds, d.PerSec)
	s := r.Scale
	fmt.Fprintf(w, "scale: %d clinics onboarded in %.1f s, %d agents synced in %.1f s; relay RSS %.0f MiB (peak %.0f); "+
		"request path at 16 clients %.0f req/s, p50 %.1f ms, p99 %.1f ms; shutdown %.2f s; startup %.2f s (RSS after %.0f MiB)\n",
		s.Clinics, s.OnboardSeconds, s.Agents, s.AgentsSeconds, s.RSSMiB, s.PeakMiB, s.Requests.PerSec, s.Requests.P50ms,
		s.Requests.P99ms, s.ShutdownSec, s.StartupSec, s.RestartRSSMiB)
	if len(r.IngestionErrors) > 0 {
		fmt.Fprintf(w, "ingestion errors: %v\n", r.IngestionErrors)
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\twant\tgot\tmet")
	for _, t := range r.Targets {
		met := "no"
		if t.Met {
			met = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%.2f %s\t%s\n", t.Name, t.Want, t.Unit, t.Got, t.Unit, met)
	}
	tw.Flush()
}
