package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/cmd/internal/command"
	relayapp "github.com/clinicrelay/clinicrelay/cmd/relay/app"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/clinics"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

const floodUsage = `usage:
  bench flood [--keys N] [--kib N] [--json] [--keep DIR]
`

// FloodResult is one clinic's creds flooding the relay with days of
// availability, as issue 12 found it: 1,200 keys of 250 KB took the relay
// from 37 MB to 790 MB. It runs twice: through the agent's own client
// (each write waits for the relay's answer) and as a burst (every write
// sent at once, answers read as they come).
type FloodResult struct {
	Mode     string  `json:"mode"`
	Keys     int     `json:"keys"`
	KiB      int     `json:"kib_each"`
	Accepted int64   `json:"accepted"`
	Refused  int64   `json:"refused"`
	Other    int64   `json:"other_errors"` // unanswered or unavailable
	Seconds  float64 `json:"seconds"`
	IdleMiB  float64 `json:"idle_rss_mib"` // the relay before the flood
	PeakMiB  float64 `json:"peak_rss_mib"` // the most sampled during it (every 50 ms)
	AfterMiB float64 `json:"after_rss_mib"`
	// OtherSlots is the other clinic's free slots before and after: the
	// flood must not touch them.
	OtherSlotsBefore int  `json:"other_slots_before"`
	OtherSlotsAfter  int  `json:"other_slots_after"`
	Within           bool `json:"within_target"` // peak < idle + 100 MiB and the other clinic intact
}

// floodTarget is issue 12's bound on what one clinic's flood may add.
const floodTarget = 100.0 // MiB above idle

func runFlood(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench flood", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keys := fs.Int("keys", 1200, "days one clinic tries to publish")
	kib := fs.Int("kib", 250, "size of each, in KiB")
	asJSON := fs.Bool("json", false, "print JSON")
	keep := fs.String("keep", "", "keep data and logs in DIR instead of a temp dir")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *keys < 1 || *kib < 1 {
		return command.ErrUsage
	}
	dir := *keep
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "clinicrelay-flood-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "bench flood: "+format+"\n", args...) }
	var results []FloodResult
	for _, mode := range []string{"paced", "burst"} {
		r, err := floodOnce(ctx, filepath.Join(dir, mode), mode, *keys, *kib, logf)
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		results = append(results, r)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tkeys\tKiB\taccepted\trefused\tother\ts\tidle MiB\tpeak MiB\tafter MiB\tpeak-idle\tother clinic's slots\t")
	for _, r := range results {
		verdict := "ok"
		if !r.Within {
			verdict = "OVER TARGET"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.0f\t%.0f\t%.0f\t%.0f %s\t%d→%d\t\n", r.Mode, r.Keys, r.KiB, r.Accepted,
			r.Refused, r.Other, r.Seconds, r.IdleMiB, r.PeakMiB, r.AfterMiB, r.PeakMiB-r.IdleMiB, verdict, r.OtherSlotsBefore, r.OtherSlotsAfter)
	}
	return tw.Flush()
}

// floodOnce runs one flood on a relay of its own, as deployed (abuse
// limits on), beside another clinic whose agent publishes 60 days of dense
// slots.
func floodOnce(ctx context.Context, dir, mode string, keys, kib int, logf func(string, ...any)) (FloodResult, error) {
	r := FloodResult{Mode: mode, Keys: keys, KiB: kib}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return r, err
	}
	relay := &relayProc{dir: filepath.Join(dir, "relay"), abuseLimits: true}
	if _, err := startRelay(ctx, relay); err != nil {
		return r, fmt.Errorf("relay: %w", err)
	}
	defer relay.stop(time.Minute)
	f := &fleet{natsURL: relay.natsURL(), dir: filepath.Join(dir, "agents")}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return r, err
	}
	defer f.close()
	var creds []byte
	err := relayapp.WithAdmin(ctx, relay.dir, func(ctx context.Context, a *clinics.Admin) error {
		if _, _, err := f.join(ctx, a, "alpha", dense()); err != nil {
			return err
		}
		var err error
		creds, err = a.Add(ctx, clinicNamed("beta"))
		return err
	})
	if err != nil {
		return r, err
	}
	if r.OtherSlotsBefore, err = settledSlots(ctx, relay.url(), "alpha"); err != nil {
		return r, err
	}
	credsFile := filepath.Join(dir, "beta.creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		return r, err
	}
	nc, err := nats.Connect(relay.natsURL(), nats.UserCredentials(credsFile), nats.Name("flood"),
		nats.CustomInboxPrefix(subjects.AgentInboxPrefix("beta")))
	if err != nil {
		return r, err
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		return r, err
	}
	b := cjs.NewAgentBucket(js, subjects.BucketAvailability, "beta")
	// One small day as the agent writes it, so a flood that cannot write
	// at all says so at once.
	key, value := floodDay(1, 1)
	if _, err := b.Put(ctx, key, value); err != nil {
		return r, fmt.Errorf("beta's first write: %w", err)
	}
	time.Sleep(3 * time.Second)
	r.IdleMiB, _ = relay.memory()
	logf("%s: %d days of %d KiB from clinic beta (relay at %.0f MiB)", mode, keys, kib, r.IdleMiB)
	stop := sampleRSS(relay.child, &r.PeakMiB)
	t0 := time.Now()
	if mode == "paced" {
		floodPaced(ctx, b, keys, kib, &r)
	} else {
		err = floodBurst(nc, keys, kib, &r)
	}
	r.Seconds = time.Since(t0).Seconds()
	time.Sleep(2 * time.Second)
	stop()
	if err != nil {
		return r, err
	}
	r.AfterMiB, _ = relay.memory()
	if r.OtherSlotsAfter, err = settledSlots(ctx, relay.url(), "alpha"); err != nil {
		return r, fmt.Errorf("the other clinic after the flood: %w", err)
	}
	r.Within = r.PeakMiB-r.IdleMiB < floodTarget && r.AfterMiB-r.IdleMiB < floodTarget &&
		r.OtherSlotsAfter == r.OtherSlotsBefore
	logf("%s: %d accepted, %d refused, %d other in %.1fs; peak %.0f MiB, after %.0f MiB", mode, r.Accepted, r.Refused,
		r.Other, r.Seconds, r.PeakMiB, r.AfterMiB)
	return r, nil
}

// settledSlots counts clinic's free slots once two counts a second apart
// agree (its agent has published every day).
func settledSlots(ctx context.Context, base, clinic string) (int, error) {
	hc := &http.Client{Timeout: 30 * time.Second}
	last := -1
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		s, err := freeSlots(ctx, hc, base, clinic, services.DaysAhead-1)
		if err == nil && len(s) > 0 && len(s) == last {
			return last, nil
		}
		last = len(s)
	}
	return 0, fmt.Errorf("the slots of %s never settled (%d)", clinic, last)
}

// sampleRSS records the child's largest resident set into peak until stop.
func sampleRSS(c *child, peak *float64) (stop func()) {
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for t := time.NewTicker(50 * time.Millisecond); ; {
			if rss, _ := c.memory(); rss > *peak {
				*peak = rss
			}
			select {
			case <-quit:
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(quit); <-done }
}

// floodDay is day i of the flood (from yesterday) as the relay would take
// it if it were in the window: one provider's minutes, over and over, to
// size KiB.
func floodDay(i, kib int) (key string, value []byte) {
	date := time.Now().UTC().AddDate(0, 0, i-1).Truncate(24 * time.Hour)
	d := services.Day{Clinic: "beta", Date: date.Format(time.DateOnly)}
	one, _ := json.Marshal(services.Slot{ID: services.SlotID("p", date), ProviderID: "p", Start: date, End: date})
	for n := range (kib<<10)/(len(one)+1) + 1 {
		start := date.Add(time.Duration(n%1440) * time.Minute)
		d.Slots = append(d.Slots, services.Slot{ID: services.SlotID("p", start), ProviderID: "p", Start: start, End: start.Add(time.Minute)})
	}
	b, _ := json.Marshal(d)
	return subjects.AvailabilityKey("beta", d.Date), b
}

// floodPaced writes through the agent's own client, 8 at a time.
func floodPaced(ctx context.Context, b *cjs.Bucket, keys, kib int, r *FloodResult) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < keys; i = int(next.Add(1) - 1) {
				key, value := floodDay(i, kib)
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := b.Put(wctx, key, value)
				cancel()
				count(r, err)
			}
		})
	}
	wg.Wait()
}

// floodBurst sends every write without waiting, then reads the answers.
func floodBurst(nc *nats.Conn, keys, kib int, r *FloodResult) error {
	inbox := nc.NewInbox()
	answers := make(chan *nats.Msg, keys)
	sub, err := nc.ChanSubscribe(inbox, answers)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	for i := range keys {
		key, value := floodDay(i, kib)
		m := nats.NewMsg(subjects.AgentWrite("beta", subjects.BucketAvailability, key[len("beta."):]))
		m.Reply, m.Data = inbox, value
		m.Header.Set(subjects.HeaderOp, cjs.OpPut)
		if err := nc.PublishMsg(m); err != nil {
			return err
		}
	}
	if err := nc.FlushTimeout(time.Minute); err != nil {
		return err
	}
	got := 0
	for timeout := time.After(time.Minute); got < keys; got++ {
		select {
		case m := <-answers:
			var a struct{ Code string }
			json.Unmarshal(m.Data, &a)
			switch a.Code {
			case "":
				r.Accepted++
			case "refused":
				r.Refused++
			default:
				r.Other++
			}
		case <-timeout:
			r.Other += int64(keys - got)
			return nil
		}
	}
	return nil
}

func count(r *FloodResult, err error) {
	switch {
	case err == nil:
		atomic.AddInt64(&r.Accepted, 1)
	case errors.Is(err, cjs.ErrRefused):
		atomic.AddInt64(&r.Refused, 1)
	default:
		atomic.AddInt64(&r.Other, 1)
	}
}
