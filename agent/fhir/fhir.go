// Package fhir is the agent's connector to a practice-management system that
// speaks FHIR R4: free slots come from its Schedules and Slots, a request
// becomes a proposed Appointment on the requested Slot, and the patient's
// status follows what the clinic then does to the Appointment. See
// docs/fhir.md.
package fhir

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/connector"
	"github.com/clinicrelay/clinicrelay/services"
)

// Config configures the connector.
type Config struct {
	// URL is the FHIR base, e.g. https://pms.clinic.lan/fhir/R4.
	URL string
	// Token, when set, is sent as "Authorization: Bearer <token>".
	Token string
	// BasicUser and BasicPassword, when set, are sent as HTTP basic auth.
	BasicUser, BasicPassword string
	// HTTP is the client (default: 30 s timeout).
	HTTP *http.Client
	// PollEvery is how often the PMS is asked what changed (default 15 s).
	PollEvery time.Duration
	// Days is how far ahead free slots are read (default 60).
	Days   int
	Logger *slog.Logger
	Now    func() time.Time
}

// Connector is the FHIR connector. Its state is a cache of what the PMS
// holds: the PMS is the durable store, so a restarted agent rebuilds it
// from the PMS.
type Connector struct {
	cfg     Config
	c       *client
	log     *slog.Logger
	changed chan struct{}

	mu        sync.Mutex
	clinic    services.Clinic
	loc       *time.Location
	providers map[string]provider // provider ID → its schedule
	schedules map[string]string   // schedule ID → provider ID
	free      map[string]slot     // services slot ID → free FHIR slot, in the window
	loadedDay string              // the local date the window was loaded on
	since     time.Time           // what the next poll asks for
	changes   []string            // slot IDs whose days changed since TakeChanges
	allDays   bool                // every day may have changed
	outcomes  map[string]services.Status
	published map[string]services.Status
	health    error

	pollMu sync.Mutex // one poll at a time: a full load replaces the cache
}

type provider struct {
	services.Provider
	schedule string
	actor    reference
}

var (
	_ connector.Connector        = (*Connector)(nil)
	_ connector.ChangeTracker    = (*Connector)(nil)
	_ connector.HealthReporter   = (*Connector)(nil)
	_ connector.PatientDirectory = (*Connector)(nil)
	_ connector.PatientRecords   = (*Connector)(nil)
)

// New returns a connector for the PMS at cfg.URL. It does not call the PMS
// until it is asked for something.
func New(cfg Config) (*Connector, error) {
	if !strings.HasPrefix(cfg.URL, "http://") && !strings.HasPrefix(cfg.URL, "https://") {
		return nil, fmt.Errorf("fhir: --fhir-url %q must be an http(s) URL", cfg.URL)
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 15 * time.Second
	}
	if cfg.Days <= 0 {
		cfg.Days = 60
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cl := newClient(strings.TrimSuffix(cfg.URL, "/"), cfg.HTTP)
	switch {
	case cfg.Token != "":
		cl.auth = func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+cfg.Token) }
	case cfg.BasicUser != "":
		cl.auth = func(r *http.Request) { r.SetBasicAuth(cfg.BasicUser, cfg.BasicPassword) }
	}
	return &Connector{cfg: cfg, c: cl, log: cfg.Logger.With("component", "fhir"), changed: make(chan struct{}, 1),
		loc: time.UTC, providers: map[string]provider{}, schedules: map[string]string{}, free: map[string]slot{},
		outcomes: map[string]services.Status{}, published: map[string]services.Status{}}, nil
}

// Name implements connector.Connector.
func (c *Connector) Name() string { return "fhir" }

// SetClinic implements connector.Connector: the clinic's zone sets its days.
func (c *Connector) SetClinic(cl services.Clinic) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loc.String() != cl.Location().String() {
		c.loadedDay = "" // the window's days were in another zone: load them again
	}
	c.clinic, c.loc = cl, cl.Location()
}

// Changed implements connector.Connector.
func (c *Connector) Changed() <-chan struct{} { return c.changed }

func (c *Connector) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// TakeChanges implements connector.ChangeTracker.
func (c *Connector) TakeChanges() ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	slots, all := c.changes, c.allDays
	c.changes, c.allDays = nil, false
	return slots, all
}

// Health implements connector.HealthReporter: "PMS unreachable" while the last
// call to the PMS failed for want of an answer.
func (c *Connector) Health() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.health
}

// track records the outcome of a call to the PMS for Health and the log:
// the first failure and the recovery are logged, not every poll.
func (c *Connector) track(err error) {
	c.mu.Lock()
	was := c.health
	switch {
	case err == nil:
		c.health = nil
	case errors.Is(err, ErrUnreachable):
		c.health = ErrUnreachable
	case services.ErrorCode(err) == services.EConflict || services.ErrorCode(err) == services.ENotFound:
		// An answer about one request (a slot taken, a request unknown),
		// not a sign of the PMS's health.
	default:
		// 401, 403 and other refusals: the PMS answers, but the connector
		// cannot work with it. The error names methods, paths and
		// statuses only.
		c.health = fmt.Errorf("PMS refused the connector: %w", err)
	}
	now := c.health
	c.mu.Unlock()
	switch {
	case was == nil && now != nil:
		c.log.Error("PMS not usable: requests wait in the queue until it is", "err", err.Error())
	case was != nil && now == nil:
		c.log.Info("PMS answers again")
	}
}

// Run polls the PMS every PollEvery until ctx ends. Run it beside the agent.
func (c *Connector) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.PollEvery)
	defer t.Stop()
	for {
		if err := c.poll(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, ErrUnreachable) {
			c.log.Warn("poll the PMS", "err", err.Error())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// PendingOutcomes implements connector.Connector.
func (c *Connector) PendingOutcomes(ctx context.Context) ([]services.Status, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]services.Status, 0, len(c.outcomes))
	for _, st := range c.outcomes {
		st.ClinicID = c.clinic.ID // a poll may have run before SetClinic
		out = append(out, st)
	}
	return out, nil
}

// MarkPublished implements connector.Connector.
func (c *Connector) MarkPublished(ctx context.Context, st services.Status) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.outcomes[st.RequestID]; ok && cur.Same(st) {
		delete(c.outcomes, st.RequestID)
	}
	if len(c.published) >= maxPublished {
		clear(c.published) // bounded; forgetting only costs a republication
	}
	c.published[st.RequestID] = st
	return nil
}

// queue makes st pending publication unless it was published as it is.
func (c *Connector) queue(st services.Status) {
	c.mu.Lock()
	if p, ok := c.published[st.RequestID]; !ok || !p.Same(st) {
		c.outcomes[st.RequestID] = st
	}
	c.mu.Unlock()
	c.signal()
}

// maxPublished bounds the outcomes remembered as published.
const maxPublished = 100_000
