package app

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Stats summarises one load step.
type Stats struct {
	Clients int     `json:"clients"`
	OK      int     `json:"ok"`
	Failed  int     `json:"failed"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_sec"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	Maxms   float64 `json:"max_ms"`
}

// summarize turns latencies into Stats over the wall time d.
func summarize(clients, failed int, lat []time.Duration, d time.Duration) Stats {
	slices.Sort(lat)
	s := Stats{Clients: clients, OK: len(lat), Failed: failed, Seconds: d.Seconds()}
	if d > 0 {
		s.PerSec = float64(len(lat)) / d.Seconds()
	}
	if len(lat) > 0 {
		s.P50ms = ms(pct(lat, 0.50))
		s.P99ms = ms(pct(lat, 0.99))
		s.Maxms = ms(lat[len(lat)-1])
	}
	return s
}

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// closedLoop runs clients goroutines, each calling do back to back for d,
// after a warm-up of d/5 that is not counted. do returns false when the
// call failed (or there is nothing left to do: ok and failed both false).
func closedLoop(ctx context.Context, clients int, d time.Duration, do func(ctx context.Context) (ok bool, err error)) Stats {
	warm, cancelWarm := context.WithTimeout(ctx, d/5)
	run := func(ctx context.Context, record bool) ([]time.Duration, int) {
		var mu sync.Mutex
		var all []time.Duration
		failed := 0
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				var lat []time.Duration
				bad := 0
				for ctx.Err() == nil {
					t0 := time.Now()
					ok, err := do(ctx)
					switch {
					case ok:
						lat = append(lat, time.Since(t0))
					case err != nil && ctx.Err() == nil:
						bad++
					case err == nil:
						return // nothing left to do
					}
				}
				mu.Lock()
				all, failed = append(all, lat...), failed+bad
				mu.Unlock()
			})
		}
		wg.Wait()
		return all, failed
	}
	run(warm, false)
	cancelWarm()
	mctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t0 := time.Now()
	lat, failed := run(mctx, true)
	return summarize(clients, failed, lat, time.Since(t0))
}
