package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/internal/poll"
)

// postAll requests every slot, workers at a time, and fails unless each is
// accepted; it returns the requests' tokens by ID.
func postAll(t *testing.T, base, clinic string, slots []string, workers int) map[string]string {
	t.Helper()
	l := startLoad(t, base, clinic, slots, workers, 10*time.Second)
	l.wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.accepted) != len(slots) {
		t.Fatalf("%d of %d requests accepted; failures: %s", len(l.accepted), len(slots), l.failuresLocked())
	}
	return l.accepted
}

// load is patients posting requests from a few goroutines, one distinct
// slot each, until stopped or out of slots. It records what was accepted
// and sorts failures: refused (no connection: nothing reached the relay, the
// slot is tried again), broken (the connection failed mid-request: the
// request may or may not be queued) and error statuses.
type load struct {
	base, clinic string
	hc           *http.Client
	slots        chan string
	stopc        chan struct{}
	stopOnce     sync.Once
	wg           sync.WaitGroup

	mu         sync.Mutex
	accepted   map[string]string // request ID -> status token
	acceptedAt [][2]time.Time    // when each accepted request was sent and answered
	refused    int
	broken     int
	statuses   map[int]int
	slowest    time.Duration
}

func startLoad(t *testing.T, base, clinic string, slots []string, workers int, timeout time.Duration) *load {
	t.Helper()
	l := &load{base: base, clinic: clinic, slots: make(chan string, len(slots)), stopc: make(chan struct{}),
		accepted: map[string]string{}, statuses: map[int]int{},
		hc: &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}}
	for _, s := range slots {
		l.slots <- s
	}
	for range workers {
		l.wg.Add(1)
		go l.work()
	}
	t.Cleanup(l.stop)
	return l
}

func (l *load) work() {
	defer l.wg.Done()
	for {
		var slot string
		select {
		case <-l.stopc:
			return
		case slot = <-l.slots:
		default:
			return // every slot tried
		}
		l.post(slot)
	}
}

func (l *load) post(slot string) {
	b, _ := json.Marshal(validRequest(slot))
	start := time.Now()
	resp, err := l.hc.Post(l.base+"/api/v1/clinics/"+l.clinic+"/requests", "application/json", bytes.NewReader(b))
	var created map[string]string
	if err == nil {
		err = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&created)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			err = nil
		}
	}
	took := time.Since(start)
	l.mu.Lock()
	l.slowest = max(l.slowest, took)
	pause := true
	switch {
	case err != nil && errors.Is(err, syscall.ECONNREFUSED):
		l.refused++
		l.slots <- slot
	case err != nil:
		l.broken++
	case resp.StatusCode == http.StatusCreated:
		l.accepted[created["id"]] = created["token"]
		l.acceptedAt = append(l.acceptedAt, [2]time.Time{start, time.Now()})
		pause = false
	default:
		l.statuses[resp.StatusCode]++
	}
	l.mu.Unlock()
	if pause { // the relay is down or failing: do not spin
		select {
		case <-l.stopc:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop stops the workers and waits for them; safe to call twice.
func (l *load) stop() {
	l.stopOnce.Do(func() { close(l.stopc) })
	l.wg.Wait()
}

// wait waits until every slot was tried.
func (l *load) wait() { l.wg.Wait() }

// Accepted is how many requests got a 201 so far.
func (l *load) Accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}

// awaitAccepted waits until n requests in all got a 201.
func (l *load) awaitAccepted(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	poll.For(t, timeout, func() error {
		if got := l.Accepted(); got < n {
			l.mu.Lock()
			defer l.mu.Unlock()
			return fmt.Errorf("%d accepted, want %d; failures: %s", got, n, l.failuresLocked())
		}
		return nil
	})
}

// failed is how many requests ended in a broken connection or an error
// status: those that may have been queued without the patient knowing.
func (l *load) failed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.broken
	for _, c := range l.statuses {
		n += c
	}
	return n
}

func (l *load) failuresLocked() string {
	return fmt.Sprintf("refused %d, broken %d, statuses %v", l.refused, l.broken, l.statuses)
}

// report logs the load's counts and its longest stretch without a 201.
func (l *load) report(t *testing.T, fault time.Time) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	at := slices.Clone(l.acceptedAt)
	slices.SortFunc(at, func(a, b [2]time.Time) int { return a[1].Compare(b[1]) })
	var gap time.Duration
	recovery := time.Duration(-1)
	for i, a := range at {
		if i > 0 {
			gap = max(gap, a[1].Sub(at[i-1][1]))
		}
		if recovery < 0 && a[0].After(fault) {
			recovery = a[1].Sub(fault)
		}
	}
	t.Logf("load: %d accepted, %s; slowest answer %s; longest gap without a 201 %s; "+
		"fault → first 201 to a request sent after it %s",
		len(l.accepted), l.failuresLocked(), l.slowest.Round(time.Millisecond), gap.Round(time.Millisecond),
		recovery.Round(time.Millisecond))
}
