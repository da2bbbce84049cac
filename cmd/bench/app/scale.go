package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/console"
	relayapp "github.com/clinicrelay/clinicrelay/cmd/relay/app"
	"github.com/clinicrelay/clinicrelay/jetstream/clinics"
)

// ScaleResult is the relay with many clinics.
type ScaleResult struct {
	Clinics        int     `json:"clinics"`
	Agents         int     `json:"agents"`
	OnboardSeconds float64 `json:"onboard_seconds"`
	AgentsSeconds  float64 `json:"agents_ready_seconds"` // until every agent's slots are served
	RSSMiB         float64 `json:"rss_mib"`              // after the request load
	PeakMiB        float64 `json:"peak_rss_mib"`
	ShutdownSec    float64 `json:"shutdown_seconds"` // SIGTERM to exit, agents connected
	StartupSec     float64 `json:"startup_seconds"`  // exec to serving, catalog loaded
	RestartRSSMiB  float64 `json:"restart_rss_mib"`
	Requests       Stats   `json:"requests"`
}

// scale onboards Clinics clinics, connects Agents agents, loads the request
// path, then stops and restarts the relay with all of it in place.
func (b *bench) scale(ctx context.Context) error {
	cfg := b.cfg
	b.relay = &relayProc{dir: filepath.Join(b.dir, "scale")}
	if _, err := startRelay(ctx, b.relay); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			b.relay.stop(5 * time.Minute)
		}
	}()
	f := &fleet{natsURL: b.relay.natsURL(), dir: filepath.Join(b.dir, "agents-scale")}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return err
	}
	defer f.close()
	res := &b.rep.Scale
	res.Clinics, res.Agents = cfg.Clinics, cfg.Agents
	b.logf("scale: onboarding %d clinics", cfg.Clinics)
	creds := make([][]byte, cfg.Agents)
	t0 := time.Now()
	err := relayapp.WithAdmin(ctx, b.relay.dir, func(ctx context.Context, a *clinics.Admin) error {
		var next atomic.Int64
		var first error
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < cfg.Clinics; i = int(next.Add(1) - 1) {
					c, err := a.Add(ctx, clinicNamed(scaleClinic(i)))
					mu.Lock()
					if err != nil && first == nil {
						first = err
					}
					if i < cfg.Agents {
						creds[i] = c
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return first
	})
	if err != nil {
		return err
	}
	res.OnboardSeconds = time.Since(t0).Seconds()
	b.logf("scale: starting %d agents", cfg.Agents)
	t0 = time.Now()
	for i := range cfg.Agents {
		con, err := f.console(ctx, scaleClinic(i), console.DemoProviders())
		if err != nil {
			return err
		}
		if _, err := f.start(creds[i], con); err != nil {
			return err
		}
	}
	if err := b.awaitSynced(ctx, cfg.Agents, 10*time.Minute); err != nil {
		return err
	}
	res.AgentsSeconds = time.Since(t0).Seconds()

	var lists [][]slot
	for i := range min(cfg.Agents, 50) {
		s, err := freeSlots(ctx, b.http, b.relay.url(), scaleClinic(i), 59)
		if err != nil {
			return err
		}
		lists = append(lists, s)
	}
	p := &poster{hc: b.http, base: b.relay.url(), pool: &slotPool{items: interleave(lists)}}
	b.logf("scale: request path, 16 clients")
	res.Requests = closedLoop(ctx, 16, b.cfg.Step, p.post)
	res.RSSMiB, res.PeakMiB = b.relay.memory()

	b.logf("scale: stopping the relay with %d agents connected", cfg.Agents)
	d, err := b.relay.stop(5 * time.Minute)
	stopped = true
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	res.ShutdownSec = d.Seconds()
	b.logf("scale: restarting it")
	d, err = startRelay(ctx, b.relay)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	stopped = false
	res.StartupSec = d.Seconds()
	res.RestartRSSMiB, _ = b.relay.memory()
	return nil
}

func scaleClinic(i int) string { return fmt.Sprintf("scale-%05d", i) }

// awaitSynced waits until n clinics show a heartbeat in the clinic list.
func (b *bench) awaitSynced(ctx context.Context, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		body, err := get(ctx, b.http, b.relay.url()+"/api/v1/clinics")
		if err != nil {
			return err
		}
		var list []struct {
			LastSynced *time.Time `json:"last_synced"`
		}
		json.Unmarshal(body, &list)
		synced := 0
		for _, c := range list {
			if c.LastSynced != nil {
				synced++
			}
		}
		if synced >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("scale: %d of %d agents synced after %s", synced, n, limit)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
