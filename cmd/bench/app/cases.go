package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/jetstream/clinics"
	"github.com/clinicrelay/clinicrelay/services"
)

// levels are the concurrencies the request path and reads are measured at.
var levels = []int{1, 16, 64}

// requestBody is a patient's request for slot, as the API takes it.
func requestBody(slotID string) string {
	return `{"slot_id":"` + slotID + `","name":"Bench Patient","birth_date":"1980-04-02","phone":"+1 416 555 0100",` +
		`"email":"bench@example.org","reason":"benchmark run, a realistic sentence or two about a sore knee","consent":true}`
}

// poster sends requests for slots from pool; it notes when each accepted
// one was sent, and the first error of a kind.
type poster struct {
	hc    *http.Client
	base  string
	pool  *slotPool
	sent  sync.Map // request ID -> time.Time sent
	mu    sync.Mutex
	errs  map[string]int
	count atomic.Int64
}

func (p *poster) fail(err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.errs == nil {
		p.errs = map[string]int{}
	}
	p.errs[trimErr(err)]++
	return err
}

func (p *poster) post(ctx context.Context) (bool, error) {
	s, ok := p.pool.take()
	if !ok {
		return false, nil
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/api/v1/clinics/"+s.clinic+"/requests",
		strings.NewReader(requestBody(s.id)))
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := p.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false, err
		}
		return false, p.fail(err)
	}
	defer resp.Body.Close()
	var out struct {
		ID    string `json:"id"`
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusCreated {
		return false, p.fail(fmt.Errorf("%d %s", resp.StatusCode, out.Error))
	}
	p.sent.Store(out.ID, t0)
	p.count.Add(1)
	return true, nil
}

func (p *poster) errors() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errs
}

// ingestion: POST requests at each level beside raw JetStream publishes at
// the same concurrency; then accepted → stored at a steady rate.
func (b *bench) ingestion(ctx context.Context, a *clinics.Admin, f *fleet) error {
	const n = 8
	var lists [][]slot
	for i := range n {
		if _, _, err := f.join(ctx, a, fmt.Sprintf("ingest-%d", i), dense()); err != nil {
			return err
		}
	}
	for i := range n {
		s, err := b.awaitSlots(ctx, fmt.Sprintf("ingest-%d", i), 59, 30_000)
		if err != nil {
			return err
		}
		lists = append(lists, s)
	}
	p := &poster{hc: b.http, base: b.relay.url(), pool: &slotPool{items: interleave(lists)}}
	raw, err := newRawPublisher(ctx, a.JS)
	if err != nil {
		return err
	}
	defer raw.close(ctx)
	floor, err := newFloorBooker(ctx, a.JS)
	if err != nil {
		return err
	}
	defer floor.close(ctx)
	for _, c := range levels {
		b.logf("ingestion, %d clients", c)
		got := closedLoop(ctx, c, b.cfg.Step, p.post)
		base := closedLoop(ctx, c, b.cfg.Step, raw.publish)
		b.rep.Ingestion = append(b.rep.Ingestion, pair(got, base))
		b.rep.Floor = append(b.rep.Floor, pair(closedLoop(ctx, c, b.cfg.Step, floor.book), base))
		if p.pool.left() == 0 {
			return fmt.Errorf("ran out of slots at %d clients: lengthen the pool", c)
		}
	}
	b.rep.IngestionErrors = p.errors()
	return b.accepted(ctx, p, f)
}

// accepted measures request sent → stored in the clinic's console at a
// steady rate, well under the ceiling, as a clinic sees it on a busy day.
func (b *bench) accepted(ctx context.Context, p *poster, f *fleet) error {
	const rate = 200
	b.logf("accepted → stored at %d req/s", rate)
	p.sent.Clear()
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	var wg sync.WaitGroup
	for end := time.Now().Add(2 * b.cfg.Step); time.Now().Before(end); <-tick.C {
		wg.Go(func() { p.post(ctx) })
	}
	wg.Wait()
	var lat []time.Duration
	deadline := time.Now().Add(30 * time.Second)
	for {
		lat, missing := lat[:0], 0
		p.sent.Range(func(k, v any) bool {
			if at, ok := f.stored.Load(k); ok {
				lat = append(lat, at.(time.Time).Sub(v.(time.Time)))
			} else {
				missing++
			}
			return true
		})
		if missing == 0 {
			b.rep.Stored = summarize(1, 0, lat, 2*b.cfg.Step)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d accepted requests not stored after 30s", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawPublisher is the baseline: synchronous JetStream publishes of a body
// as large as a queued request, to a file stream on the same server.
type rawPublisher struct {
	js   jetstream.JetStream
	body []byte
	n    atomic.Int64
}

const rawStream = "BENCH_RAW"

func newRawPublisher(ctx context.Context, js jetstream.JetStream) (*rawPublisher, error) {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: rawStream, Subjects: []string{"bench.raw.>"},
		Storage: jetstream.FileStorage, MaxAge: 10 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("raw stream: %w", err)
	}
	return &rawPublisher{js: js, body: queuedBody()}, nil
}

// queuedBody is as large as a queued request.
func queuedBody() []byte {
	req := services.Request{ID: strings.Repeat("a", 32), ClinicID: "ingest-0", SlotID: "dr-a_20300101T1400Z",
		CreatedAt: time.Now().UTC()}
	json.Unmarshal([]byte(requestBody(req.SlotID)), &req)
	body, _ := json.Marshal(req)
	return body
}

func (r *rawPublisher) publish(ctx context.Context) (bool, error) {
	_, err := r.js.Publish(ctx, fmt.Sprintf("bench.raw.%d", r.n.Add(1)%64), r.body)
	return err == nil, err
}

func (r *rawPublisher) close(ctx context.Context) { r.js.DeleteStream(ctx, rawStream) }

// floorBooker makes a booking's own JetStream writes, in its two round
// trips, and nothing else: an exclusive create with a TTL, then a KV put
// and a publish with a message id, awaited together. No HTTP, no sealing,
// no agent, no audit, none of the writes a booking causes later: the most
// the request path could reach on this machine with this design.
type floorBooker struct {
	js            jetstream.JetStream
	holds, status jetstream.KeyValue
	body          []byte
	n             atomic.Int64
}

const (
	floorStream  = "BENCH_FLOOR"
	floorHoldTTL = time.Minute // a per-key TTL, as the relay's holds have
)

var floorBuckets = []string{"BENCH_FLOOR_HOLDS", "BENCH_FLOOR_STATUS"}

func newFloorBooker(ctx context.Context, js jetstream.JetStream) (*floorBooker, error) {
	f := &floorBooker{js: js, body: queuedBody()}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: floorStream, Subjects: []string{"bench.floor.>"},
		Storage: jetstream.FileStorage, MaxAge: 10 * time.Minute, Duplicates: 2 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("floor stream: %w", err)
	}
	if f.holds, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: floorBuckets[0], History: 1,
		Storage: jetstream.FileStorage, LimitMarkerTTL: time.Minute}); err != nil {
		return nil, fmt.Errorf("floor holds: %w", err)
	}
	if f.status, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: floorBuckets[1], History: 1,
		Storage: jetstream.FileStorage}); err != nil {
		return nil, fmt.Errorf("floor status: %w", err)
	}
	return f, nil
}

func (f *floorBooker) book(ctx context.Context) (bool, error) {
	n := f.n.Add(1)
	key := fmt.Sprintf("c%d.s%d", n%8, n)
	if _, err := f.holds.Create(ctx, key, []byte(`{"request":"r"}`), jetstream.KeyTTL(floorHoldTTL)); err != nil {
		return false, err
	}
	errc := make(chan error, 1)
	go func() {
		_, err := f.status.Put(ctx, key, []byte(`{"state":"received"}`))
		errc <- err
	}()
	_, err := f.js.Publish(ctx, fmt.Sprintf("bench.floor.c%d", n%8), f.body, jetstream.WithMsgID(key))
	if serr := <-errc; err == nil {
		err = serr
	}
	return err == nil, err
}

func (f *floorBooker) close(ctx context.Context) {
	f.js.DeleteStream(ctx, floorStream)
	for _, b := range floorBuckets {
		f.js.DeleteKeyValue(ctx, b)
	}
}

// reads: GET a clinic's week of slots beside a bare Echo handler (its own
// process) answering the very same bytes.
func (b *bench) reads(ctx context.Context, a *clinics.Admin, f *fleet) error {
	const id = "reads"
	con, _, err := f.join(ctx, a, id, console.DemoProviders())
	if err != nil {
		return err
	}
	b.readsConsole = con
	if _, err := b.awaitSlots(ctx, id, 59, 500); err != nil {
		return err
	}
	url := b.relay.url() + "/api/v1/clinics/" + id + "/slots"
	body, err := b.settled(ctx, url)
	if err != nil {
		return err
	}
	file := filepath.Join(b.dir, "slots.json")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	echoProc, err := startChild("echo", filepath.Join(b.dir, "echo.log"), addr, file)
	if err != nil {
		return err
	}
	defer echoProc.stop(10 * time.Second)
	if _, err := echoProc.awaitHTTP(ctx, "http://"+addr+"/healthz", time.Now(), time.Minute); err != nil {
		return err
	}
	bare := "http://" + addr + "/slots"
	b.rep.ReadBytes = len(body)
	for _, c := range levels {
		b.logf("slot reads, %d clients", c)
		got := closedLoop(ctx, c, b.cfg.Step, getter(b.http, url, len(body)))
		if got.OK == 0 {
			_, err := getter(b.http, url, len(body))(ctx)
			return fmt.Errorf("slot reads: none succeeded: %v", err)
		}
		base := closedLoop(ctx, c, b.cfg.Step, getter(b.http, bare, len(body)))
		b.rep.Reads = append(b.rep.Reads, pair(got, base))
	}
	return nil
}

// settled reads url until two reads 200 ms apart agree: the agent's first
// publication has landed.
func (b *bench) settled(ctx context.Context, url string) ([]byte, error) {
	last, err := get(ctx, b.http, url)
	for i := 0; err == nil && i < 300; i++ {
		time.Sleep(200 * time.Millisecond)
		var body []byte
		if body, err = get(ctx, b.http, url); err == nil && string(body) == string(last) {
			return body, nil
		}
		last = body
	}
	return nil, fmt.Errorf("%s never settled: %v", url, err)
}

func get(ctx context.Context, hc *http.Client, url string) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return body, err
}

// getter reads url and checks it got size bytes (the same page each time).
func getter(hc *http.Client, url string, size int) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		body, err := get(ctx, hc, url)
		if err != nil {
			return false, err
		}
		if len(body) != size {
			return false, fmt.Errorf("GET %s: %d bytes, want %d: %.200s", url, len(body), size, body)
		}
		return true, nil
	}
}

// freshness: the front desk closes a day (or opens it again) in the console;
// how long until the slots API shows it.
func (b *bench) freshness(ctx context.Context, _ *clinics.Admin, f *fleet) error {
	const id = "reads"
	con := b.readsConsole
	slots, err := freeSlots(ctx, b.http, b.relay.url(), id, 14)
	if err != nil || len(slots) == 0 {
		return fmt.Errorf("freshness: no slots to close: %v", err)
	}
	_, start, _ := services.ParseSlotID(slots[0].id)
	loc, _ := time.LoadLocation(zone)
	day := start.In(loc).Format(time.DateOnly)
	url := fmt.Sprintf("%s/api/v1/clinics/%s/slots?from=%s&to=%s", b.relay.url(), id, day, day)
	n := 50
	if b.cfg.Quick {
		n = 20
	}
	b.logf("freshness, %d changes", n)
	var lat []time.Duration
	for i := range n {
		closed := i%2 == 0
		sched, err := con.Providers(ctx)
		if err != nil {
			return err
		}
		for j := range sched {
			if closed {
				sched[j].Closures = append(sched[j].Closures, day)
			} else {
				sched[j].Closures = slices.DeleteFunc(sched[j].Closures, func(d string) bool { return d == day })
			}
		}
		t0 := time.Now()
		if err := con.SetProviders(ctx, sched); err != nil {
			return err
		}
		for {
			body, err := get(ctx, b.http, url)
			if err != nil {
				return err
			}
			var l slotList
			json.Unmarshal(body, &l)
			if (len(l.Slots) == 0) == closed {
				lat = append(lat, time.Since(t0))
				break
			}
			if time.Since(t0) > 10*time.Second {
				return fmt.Errorf("freshness: change not visible after 10s")
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.rep.Fresh = summarize(1, 0, lat, 0)
	return nil
}

// drain: an agent comes back to a backlog of 10,000 requests.
func (b *bench) drain(ctx context.Context, a *clinics.Admin, f *fleet) error {
	const id, backlog = "drain", 10_000
	con, ag, err := f.join(ctx, a, id, dense())
	if err != nil {
		return err
	}
	slots, err := b.awaitSlots(ctx, id, 59, backlog)
	if err != nil {
		return err
	}
	ag.stop()
	p := &poster{hc: b.http, base: b.relay.url(), pool: &slotPool{items: slots[:backlog]}}
	b.logf("drain: queueing %d requests while the agent is away", backlog)
	t0 := time.Now()
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				if ok, err := p.post(ctx); !ok && err == nil {
					return
				}
			}
		})
	}
	wg.Wait()
	queued := int(p.count.Load())
	b.rep.Drain.QueueSeconds = time.Since(t0).Seconds()
	b.rep.Drain.Requests = queued
	before := f.counter(id).Load()
	b.logf("drain: agent back to %d requests", queued)
	t0 = time.Now()
	if _, err := f.start(ag.creds, con); err != nil {
		return err
	}
	for f.counter(id).Load()-before < int64(queued) {
		if time.Since(t0) > 5*time.Minute {
			return fmt.Errorf("drain: %d of %d stored after 5 minutes", f.counter(id).Load()-before, queued)
		}
		time.Sleep(5 * time.Millisecond)
	}
	d := time.Since(t0)
	b.rep.Drain.Seconds, b.rep.Drain.PerSec = d.Seconds(), float64(queued)/d.Seconds()
	// Acks trail the stores by a moment; the queue must end empty.
	for {
		left, err := streamLeft(ctx, a.JS, id)
		if err != nil {
			return err
		}
		if left == 0 {
			return nil
		}
		if time.Since(t0) > 5*time.Minute {
			return fmt.Errorf("drain: %d requests still queued", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
