package relay

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
)

// ProbeEvery is how often the relay checks that JetStream takes a write; it
// is not ready once three in a row have failed.
const ProbeEvery = 10 * time.Second

// health is what the relay's write probes found.
type health struct {
	mu    sync.Mutex
	every time.Duration
	okAt  time.Time // the last probe that wrote
	err   error     // the last probe's error
}

// probe writes a probe now, then every h.every until ctx ends, and logs
// when JetStream stops and starts taking them.
func (h *health) probe(ctx context.Context, js jetstream.JetStream, log *slog.Logger, stopping func() bool) {
	id := rand.Text()[:12] // this relay's subject: relays share the stream
	failing := false
	for {
		pctx, cancel := context.WithTimeout(ctx, h.every)
		err := cjs.ProbeWrite(pctx, js, id)
		cancel()
		h.mu.Lock()
		if h.err = err; err == nil {
			h.okAt = time.Now()
		}
		h.mu.Unlock()
		switch {
		case err != nil && !failing && !stopping():
			log.Error("JetStream does not take writes: bookings fail until it does", "err", err.Error())
		case err == nil && failing:
			log.Info("JetStream takes writes again")
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.every):
		}
		if stopping() {
			return
		}
	}
}

// check is nil while the relay is ready: NATS connected and JetStream
// writing. It says what is wrong otherwise, without patient data.
func (h *health) check(link *link) error {
	if link.current().Err() != nil {
		return errors.New("NATS connection down")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.okAt) <= 3*h.every {
		return nil
	}
	if h.err == nil {
		return errors.New("JetStream has not taken a write yet")
	}
	return errors.New("JetStream cannot write") // the log has why
}
