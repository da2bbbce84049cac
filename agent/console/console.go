// Package console is the clinic agent's default connector: a front-desk
// console served on the clinic LAN, keeping requests, decisions and provider
// schedules in a local bbolt file in the agent's data directory.
//
// Stored requests are PHI. The console logs request, slot and provider IDs
// only, never a patient's name, birth date, phone, email or reason.
package console

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	bolt "go.etcd.io/bbolt"

	"github.com/clinicrelay/clinicrelay/agent/connector"
	"github.com/clinicrelay/clinicrelay/agent/console/staff"
	"github.com/clinicrelay/clinicrelay/services"
)

// DefaultAddr is where the console listens unless Config.Addr says otherwise:
// loopback, so that PHI is not served to the LAN by accident.
const DefaultAddr = "127.0.0.1:8081"

// Config configures a Console.
type Config struct {
	Path   string           // the bbolt file, created with mode 0600
	Addr   string           // HTTP listen address, DefaultAddr when empty
	Logger *slog.Logger     // nil is silent
	Now    func() time.Time // nil is time.Now
	// AllowedHosts are host names (besides IP literals and localhost) the
	// console answers to, e.g. "frontdesk.maple.lan".
	AllowedHosts []string
	// SealKey is the public key requests are sealed to; the page shows its
	// fingerprint, for staff to compare with `relay clinic show`.
	SealKey string
	// StaffPath is the staff accounts' file (default: staff.db beside
	// Path), which `clinic-agent user` edits; IdleTimeout ends a session
	// unused this long (default staff.DefaultIdleTimeout).
	StaffPath   string
	IdleTimeout time.Duration
	// TLSCert and TLSKey (PEM files) make the console serve HTTPS only:
	// staff passwords, sessions and patients' details then cross the LAN
	// encrypted, and the session cookie is Secure.
	TLSCert, TLSKey string
	// LiveCheck is how often a live page's stream checks that its session
	// still holds (default 20 s; tests shorten it).
	LiveCheck time.Duration
	// Key seals the patient data in the store (32 bytes, see ParseKey and
	// KeyEnv); nil keeps it in clear. A store sealed once needs its key.
	Key []byte
}

// Console is the front-desk connector. Its methods are safe for concurrent use.
type Console struct {
	db           *bolt.DB
	addr         string
	allowedHosts map[string]bool
	log          *slog.Logger
	now          func() time.Time
	changed      chan struct{}
	echo         *echo.Echo
	sealKey      string
	staff        *staff.Directory
	vault        *vault
	liveCheck    time.Duration
	tls          *tls.Config // nil: plain HTTP

	mu       sync.Mutex
	clinic   services.Clinic
	loc      *time.Location
	dirty    map[string]struct{} // slots whose days changed, see TakeChanges
	dirtyAll bool
	refused  []string // what the relay refuses, see Refused
	auditor  services.Auditor
	portal   connector.PortalAccess // grants of portal access, once the agent is connected

	// tick is closed at the next change of what the console holds (live
	// pages wait on it), then replaced.
	tickMu sync.Mutex
	tick   chan struct{}

	closeOnce sync.Once
	closeErr  error
}

var (
	_ connector.Connector        = (*Console)(nil)
	_ connector.ChangeTracker    = (*Console)(nil)
	_ connector.RefusalReporter  = (*Console)(nil)
	_ connector.StaffAuditor     = (*Console)(nil)
	_ connector.PortalGiver      = (*Console)(nil)
	_ connector.PatientDirectory = (*Console)(nil)
	_ connector.PatientRecords   = (*Console)(nil)
)

// Open opens (or creates) the store at cfg.Path and builds the HTTP handler.
// Run serves it; Close closes the store.
func Open(cfg Config) (*Console, error) {
	if cfg.Path == "" {
		return nil, errors.New("console: config has no path")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("console: create data dir: %w", err)
	}
	v, err := newVault(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	db, err := openStore(cfg.Path, v)
	if err != nil {
		return nil, fmt.Errorf("console: open %s: %w", cfg.Path, err)
	}
	if err := createBuckets(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("console: create buckets: %w", err)
	}
	if cfg.StaffPath == "" {
		cfg.StaffPath = filepath.Join(filepath.Dir(cfg.Path), StaffFile)
	}
	dir, err := staff.Open(staff.Config{Path: cfg.StaffPath, Now: cfg.Now, IdleTimeout: cfg.IdleTimeout})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("console: %w", err)
	}
	c := &Console{
		db:           db,
		addr:         cfg.Addr,
		log:          cfg.Logger.With("connector", "console"),
		now:          func() time.Time { return cfg.Now().UTC() },
		changed:      make(chan struct{}, 1),
		loc:          time.UTC,
		dirtyAll:     true,
		allowedHosts: map[string]bool{},
		sealKey:      cfg.SealKey,
		staff:        dir,
		vault:        v,
		tick:         make(chan struct{}),
		liveCheck:    cmp.Or(cfg.LiveCheck, defaultLiveCheck),
	}
	for _, h := range cfg.AllowedHosts {
		c.allowedHosts[strings.ToLower(strings.TrimSpace(h))] = true
	}
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("console: TLS certificate: %w", err)
		}
		c.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	c.echo = c.newEcho()
	return c, nil
}

// StaffFile is the staff accounts' file name in the agent's data dir.
const StaffFile = "staff.db"

// Staff is the console's staff accounts.
func (c *Console) Staff() *staff.Directory { return c.staff }

// Close closes the store. It is idempotent; stop Run before calling it.
func (c *Console) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.db.Close() })
	return c.closeErr
}

// Name is "console".
func (c *Console) Name() string { return "console" }

// SetClinic records the clinic; its time zone is used on the page and to
// resolve slot IDs. Until it is set, or when its zone is not valid, UTC is used.
func (c *Console) SetClinic(cl services.Clinic) {
	loc, err := services.LoadZone(cl.TimeZone)
	if err != nil {
		c.log.Warn("clinic time zone not valid, using UTC", "clinic_id", cl.ID)
		loc = time.UTC
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clinic, c.loc = cl, loc
}

// Refused records what the relay refuses of this clinic's updates: the page
// shows it to the staff until it is fixed.
func (c *Console) Refused(lines []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refused = slices.Clone(lines)
}

// refusals is what the relay refuses now.
func (c *Console) refusals() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refused
}

// clinicInfo returns the clinic and its zone.
func (c *Console) clinicInfo() (services.Clinic, *time.Location) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clinic, c.loc
}

// Changed receives a value after a request is stored, a request is decided or
// the providers are edited. It is buffered (1): changes coalesce.
func (c *Console) Changed() <-chan struct{} { return c.changed }

// notify says everything may have changed (the providers were edited).
func (c *Console) notify() {
	c.mu.Lock()
	c.dirtyAll = true
	c.mu.Unlock()
	c.signal()
}

// notifySlots says the days of these slots may have changed.
func (c *Console) notifySlots(ids ...string) {
	c.mu.Lock()
	if c.dirty == nil {
		c.dirty = map[string]struct{}{}
	}
	for _, id := range ids {
		if id != "" {
			c.dirty[id] = struct{}{}
		}
	}
	c.mu.Unlock()
	c.signal()
}

func (c *Console) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
	c.tickMu.Lock()
	close(c.tick)
	c.tick = make(chan struct{})
	c.tickMu.Unlock()
}

// nextChange is closed at the next change of what the console holds.
func (c *Console) nextChange() <-chan struct{} {
	c.tickMu.Lock()
	defer c.tickMu.Unlock()
	return c.tick
}

// TakeChanges returns the slots whose days changed since the last call, or
// all when anything else may have (and at first), and forgets them.
func (c *Console) TakeChanges() (slots []string, all bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	all, c.dirtyAll = c.dirtyAll, false
	for id := range c.dirty {
		slots = append(slots, id)
	}
	c.dirty = nil
	return slots, all
}
