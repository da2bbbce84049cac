package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clinicrelay/clinicrelay/agent"
	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/jetstream/auth"
	"github.com/clinicrelay/clinicrelay/jetstream/clinics"
	"github.com/clinicrelay/clinicrelay/services"
)

// zone is every bench clinic's time zone.
const zone = "America/Toronto"

// fleet runs clinic agents in this process on the console connector, each
// dialling the relay over TCP with its own creds like a real agent, and
// notes when each request reached a clinic's store.
type fleet struct {
	natsURL string
	dir     string
	stored  sync.Map // request ID -> time.Time it was stored
	count   sync.Map // clinic -> *atomic.Int64 requests stored
	mu      sync.Mutex
	agents  []*benchAgent
	cons    []*console.Console
}

type benchAgent struct {
	creds  []byte
	cancel context.CancelFunc
	done   chan struct{}
}

// timed is the console connector, noting each store.
type timed struct {
	*console.Console
	f *fleet
}

func (t timed) Store(ctx context.Context, req services.Request) error {
	err := t.Console.Store(ctx, req)
	if err == nil {
		if _, again := t.f.stored.LoadOrStore(req.ID, time.Now()); !again {
			t.f.counter(req.ClinicID).Add(1)
		}
	}
	return err
}

func (f *fleet) counter(clinic string) *atomic.Int64 {
	c, _ := f.count.LoadOrStore(clinic, new(atomic.Int64))
	return c.(*atomic.Int64)
}

// console opens a clinic's store with the given schedules.
func (f *fleet) console(ctx context.Context, clinic string, sched []services.ProviderSchedule) (*console.Console, error) {
	con, err := console.Open(console.Config{Path: filepath.Join(f.dir, clinic+".db"), Addr: "127.0.0.1:0"})
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.cons = append(f.cons, con)
	f.mu.Unlock()
	return con, con.SetProviders(ctx, sched)
}

// start runs an agent for creds over con.
func (f *fleet) start(creds []byte, con *console.Console) (*benchAgent, error) {
	clinic, err := auth.CredsClinic(creds)
	if err != nil {
		return nil, err
	}
	key, _, err := agent.LoadSealKeys(filepath.Join(f.dir, clinic+".nk"))
	if err != nil {
		return nil, err
	}
	ag, err := agent.New(agent.Config{NATSURL: f.natsURL, Creds: creds, SealKey: key}, timed{con, f})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &benchAgent{creds: creds, cancel: cancel, done: make(chan struct{})}
	go func() { ag.Run(ctx); close(a.done) }()
	f.mu.Lock()
	f.agents = append(f.agents, a)
	f.mu.Unlock()
	return a, nil
}

// join onboards clinic id with the given schedules and starts its agent.
func (f *fleet) join(ctx context.Context, a *clinics.Admin, id string, sched []services.ProviderSchedule) (*console.Console, *benchAgent, error) {
	creds, err := a.Add(ctx, clinicNamed(id))
	if err != nil {
		return nil, nil, err
	}
	con, err := f.console(ctx, id, sched)
	if err != nil {
		return nil, nil, err
	}
	ag, err := f.start(creds, con)
	return con, ag, err
}

func (a *benchAgent) stop() {
	a.cancel()
	<-a.done
}

// close stops every agent, then closes the stores.
func (f *fleet) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	var wg sync.WaitGroup
	for _, a := range f.agents {
		wg.Go(a.stop)
	}
	wg.Wait()
	for _, c := range f.cons {
		c.Close()
	}
	f.agents, f.cons = nil, nil
}

// dense is a schedule with a great many slots: two providers, every 5
// minutes, day and night, every day (34,000 slots over 60 days).
func dense() []services.ProviderSchedule {
	hours := map[string][]services.Interval{}
	for _, d := range []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"} {
		hours[d] = []services.Interval{{Start: "00:00", End: "23:59"}}
	}
	var out []services.ProviderSchedule
	for _, id := range []string{"dr-a", "dr-b"} {
		out = append(out, services.ProviderSchedule{Provider: services.Provider{ID: id, Name: "Dr. " + strings.ToUpper(id[3:])},
			SlotMinutes: 5, Hours: hours, Closures: []string{}})
	}
	return out
}

// slot is one free slot of one clinic.
type slot struct{ clinic, id string }

// slotPool hands out each slot once.
type slotPool struct {
	items []slot
	next  atomic.Int64
}

func (p *slotPool) take() (slot, bool) {
	i := p.next.Add(1) - 1
	if i >= int64(len(p.items)) {
		return slot{}, false
	}
	return p.items[i], true
}

func (p *slotPool) left() int { return max(0, len(p.items)-int(p.next.Load())) }

type slotList struct {
	Slots []struct {
		ID string `json:"id"`
	} `json:"slots"`
}

// freeSlots lists a clinic's free slots from tomorrow for days days, from
// the relay's slots API.
func freeSlots(ctx context.Context, hc *http.Client, base, clinic string, days int) ([]slot, error) {
	loc, _ := time.LoadLocation(zone)
	from := time.Now().In(loc).AddDate(0, 0, 1)
	url := fmt.Sprintf("%s/api/v1/clinics/%s/slots?from=%s&to=%s", base, clinic,
		from.Format(time.DateOnly), from.AddDate(0, 0, days-1).Format(time.DateOnly))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("slots of %s: %d %s", clinic, resp.StatusCode, b)
	}
	var l slotList
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return nil, err
	}
	out := make([]slot, len(l.Slots))
	for i, s := range l.Slots {
		out[i] = slot{clinic, s.ID}
	}
	return out, nil
}

// interleave merges per-clinic lists round robin, so load spreads over clinics.
func interleave(lists [][]slot) []slot {
	var out []slot
	for i := 0; ; i++ {
		added := false
		for _, l := range lists {
			if i < len(l) {
				out = append(out, l[i])
				added = true
			}
		}
		if !added {
			return out
		}
	}
}
