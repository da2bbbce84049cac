// Package relay is the running relay: the embedded NATS node (or an
// existing server or cluster), provisioning, the web front, the catalog and
// status watches, the notifier, and the services agents ask the relay for
// (their consumers, their checked writes), wired from one Config and
// stopped within a deadline. cmd/relay is its command line.
package relay

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/net/netutil"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/clinics"
	"github.com/clinicrelay/clinicrelay/jetstream/node"
	"github.com/clinicrelay/clinicrelay/jetstream/notify"
	"github.com/clinicrelay/clinicrelay/jetstream/readmodel"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
	"github.com/clinicrelay/clinicrelay/web"
)

// Config is `relay serve`'s flags.
type Config struct {
	DataDir    string // embedded mode: keys, JetStream store, resolver
	HTTPAddr   string
	NATSListen string // embedded mode: where agents dial in
	NATSURL    string // external mode: an existing NATS server or cluster
	CredsFile  string // external mode: the web front's creds
	Replicas   int
	AckWait    time.Duration // how long an agent has to ack a request (tests shorten it)
	// EncryptionKey encrypts the embedded JetStream store at rest ("": not).
	EncryptionKey string
	// TLSCert/TLSKey make the embedded NATS listener TLS only; HTTPSCert/
	// HTTPSKey serve the web front over HTTPS.
	TLSCert, TLSKey     string
	HTTPSCert, HTTPSKey string
	HoldTTL             time.Duration
	Abuse               Abuse // rate limits, trusted proxies, pending cap
	Logger              *slog.Logger
	Now                 func() time.Time
	// Notify configures email notices (off without an SMTP URL).
	Notify NotifyConfig
	// ProbeEvery is how often JetStream is checked for writes (default
	// ProbeEvery; tests shorten it).
	ProbeEvery time.Duration
	// PublicNATSURL is where clinics' agents dial the relay, when not where
	// it listens (a public name, a load balancer): `relay clinic add` prints
	// it in the agent's command.
	PublicNATSURL string
	// MaxHTTPConns caps the web front's open connections (default: a
	// quarter of the process's file handles, at least 256).
	MaxHTTPConns int
}

func (c Config) maxHTTPConns() int {
	if c.MaxHTTPConns > 0 {
		return c.MaxHTTPConns
	}
	return max(int(node.FileLimit()/4), 256)
}

// Relay is a running relay.
type Relay struct {
	cfg      Config
	log      *slog.Logger
	Node     *node.Node // nil in external mode
	web      *web.Server
	ln       net.Listener
	conns    []*nats.Conn
	Catalog  *readmodel.Catalog
	ready    chan struct{} // closed when the catalog has caught up
	stopping atomic.Bool
	link     *link // the web connection's state
	// Notifier sends email notices; nil without --smtp-url.
	Notifier *notify.Notifier
	// Warden holds clinics to their connections; nil in external mode.
	Warden *clinics.Warden
	health health
	booker *services.Booker
	portal *services.Portal
}

// Start brings up NATS (embedded or external), provisions, and binds HTTP.
func Start(ctx context.Context, cfg Config) (*Relay, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HoldTTL <= 0 {
		cfg.HoldTTL = 10 * time.Minute
	}
	if cfg.ProbeEvery <= 0 {
		cfg.ProbeEvery = ProbeEvery
	}
	r := &Relay{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}), link: newLink()}
	r.health.every = cfg.ProbeEvery
	if err := r.start(ctx); err != nil {
		r.Shutdown()
		return nil, err
	}
	return r, nil
}

func (r *Relay) start(ctx context.Context) error {
	webConn, adminJS, err := r.connect()
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cjs.Provision(pctx, adminJS, r.options()); err != nil {
		return err
	}
	go r.health.probe(ctx, adminJS, r.log, r.stopping.Load)
	js, _ := jetstream.New(webConn, cjs.AuditErrHandler(r.log))
	reqs := cjs.NewRequests(js)
	r.Catalog = readmodel.NewCatalog(r.cfg.Now)
	r.Catalog.SetLogger(r.log)
	booker := &services.Booker{Holds: reqs, Outbox: reqs, Statuses: reqs, Directory: r.Catalog, Swapper: reqs, Changes: reqs,
		HoldTTL: r.cfg.HoldTTL, Now: r.cfg.Now,
		HoldExtendFailed: func(clinic, requestID string, err error) {
			r.log.Warn("hold not extended to its slot: it lapses after the hold TTL", "clinic_id", clinic,
				"request_id", requestID, "err", err.Error())
		}}
	r.booker = booker
	if booker.Pending, err = r.pendingCap(js); err != nil {
		return err
	}
	codes, err := r.emailCodes()
	if err != nil {
		return err
	}
	if r.portal, err = r.newPortal(js, reqs); err != nil {
		return err
	}
	// While the web's connection is down, the routes that need NATS answer
	// 503 at once; nats.go reconnects forever and they resume by themselves.
	r.web, err = web.New(web.Config{Booker: booker, Catalog: r.Catalog, Logger: r.log, Now: r.cfg.Now, EmailCodes: codes,
		Portal: r.portal,
		NATS:   r.link.current, SecureCookies: r.cfg.HTTPSCert != "", Audit: &cjs.Auditor{JS: js, Logger: r.log},
		Limits: r.cfg.Abuse.webLimits(), TrustedProxies: r.cfg.Abuse.TrustedProxies,
		Ready: func() error { return r.health.check(r.link) }})
	if err != nil {
		return err
	}
	r.ln, err = net.Listen("tcp", r.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", r.cfg.HTTPAddr, err)
	}
	// Patients' connections take at most a quarter of the file handles
	// (NATS half, see node.maxConns): more wait in the kernel's backlog, and
	// JetStream always has files to write with.
	r.ln = netutil.LimitListener(r.ln, r.cfg.maxHTTPConns())
	if r.cfg.HTTPSCert != "" || r.cfg.HTTPSKey != "" {
		cert, err := tls.LoadX509KeyPair(r.cfg.HTTPSCert, r.cfg.HTTPSKey)
		if err != nil {
			return fmt.Errorf("https: %w", err)
		}
		r.ln = tls.NewListener(r.ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	// The catalog must catch up before the relay serves: a page served from
	// an empty catalog would say no clinic exists.
	errc := make(chan error, 1)
	go func() { errc <- r.Catalog.Run(ctx, js, r.ready) }()
	select {
	case <-r.ready:
	case err := <-errc:
		return fmt.Errorf("catalog: %w", err)
	case <-time.After(30 * time.Second):
		return errors.New("catalog: not caught up with NATS in 30s")
	}
	go func() {
		if err := <-errc; err != nil {
			r.log.Error("catalog watch stopped; pages are frozen until restart", "err", err.Error())
		}
	}()
	// Live status pages follow STATUS through one watch.
	go (&readmodel.StatusFeed{JS: js, Logger: r.log}).Run(ctx, r.web.StatusChanged)
	if err := r.startNotifier(ctx, adminJS, booker); err != nil {
		return err
	}
	r.web.HandleMetrics(func(w io.Writer) {
		ready := 0
		if r.health.check(r.link) == nil {
			ready = 1
		}
		fmt.Fprintf(w, "# HELP clinicrelay_ready 1 while the relay takes bookings (see /readyz)\n"+
			"# TYPE clinicrelay_ready gauge\nclinicrelay_ready %d\n", ready)
		if r.Warden != nil {
			fmt.Fprintf(w, "# HELP clinicrelay_agent_connections_kicked_total agent connections past a clinic's limit, closed\n"+
				"# TYPE clinicrelay_agent_connections_kicked_total counter\nclinicrelay_agent_connections_kicked_total %d\n",
				r.Warden.Kicked())
		}
		if r.Notifier != nil {
			r.Notifier.WriteMetrics(w)
		}
	})
	// Agents ask the relay for their consumers; it makes them to its own config.
	active := func(c string) bool { cl, ok := r.Catalog.Clinic(c); return ok && !cl.Revoked }
	ac := &cjs.AgentConsumers{JS: adminJS, AckWait: r.cfg.AckWait, Logger: r.log, Active: active}
	if _, err := ac.Serve(adminJS.Conn()); err != nil {
		return err
	}
	// Agents write their keys and audit events through the relay, which
	// checks each one (cjs.AgentWrites): they publish to no stream.
	aw := &cjs.AgentWrites{JS: adminJS, Active: active, Now: r.cfg.Now, Logger: r.log}
	if err := aw.Serve(adminJS.Conn()); err != nil {
		return err
	}
	if err := r.servePortalAnswers(adminJS, active); err != nil {
		return err
	}
	if r.Node != nil {
		cert := r.cfg.TLSCert
		if cert != "" {
			cert, _ = filepath.Abs(cert) // commands may run from another directory
		}
		return r.Node.WriteRunInfo(node.RunInfo{NATSURL: r.Node.ClientURL(), HTTPURL: r.HTTPURL(), TLSCert: cert,
			PublicNATSURL: r.cfg.PublicNATSURL})
	}
	return nil
}

// connect returns the web front's connection and a JetStream handle allowed
// to provision: in embedded mode two users minted from the data dir's keys.
func (r *Relay) connect() (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("relay web"), nats.MaxReconnects(-1), nats.CustomInboxPrefix(subjects.WebInboxPrefix),
		// Back soon after a dropped connection: a booking in flight settles
		// its writes within its deadline (services.BookingDeadline).
		nats.ReconnectWait(250 * time.Millisecond),
		// No reconnect buffer: a publish while the connection is down fails
		// at once (the web answers 503) instead of waiting for a reply that
		// cannot come before its timeout.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			r.link.down()
			if err != nil && !r.stopping.Load() {
				r.log.Warn("lost NATS: requests paused until it is back", "err", err.Error())
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			r.link.up()
			r.log.Info("NATS is back: requests resumed", "server", nc.ConnectedServerName())
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			if r.stopping.Load() {
				return // watches end as we shut down; not news
			}
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			r.log.Error("nats async error", "err", err.Error(), "subject", subj)
		})}
	if r.cfg.NATSURL != "" {
		if r.cfg.CredsFile != "" {
			opts = append(opts, nats.UserCredentials(r.cfg.CredsFile))
		} else {
			r.log.Warn("connecting to NATS without credentials: for development only")
		}
		nc, err := nats.Connect(r.cfg.NATSURL, opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("connect %s: %w", r.cfg.NATSURL, err)
		}
		r.conns = append(r.conns, nc)
		js, _ := jetstream.New(nc)
		return nc, js, nil
	}
	n, err := node.Start(node.Config{DataDir: r.cfg.DataDir, Listen: r.cfg.NATSListen, Logger: r.log,
		EncryptionKey: r.cfg.EncryptionKey, TLSCert: r.cfg.TLSCert, TLSKey: r.cfg.TLSKey})
	if err != nil {
		return nil, nil, err
	}
	r.Node = n
	if err := r.startWarden(); err != nil {
		return nil, nil, err
	}
	perms := subjects.WebPermissions()
	webCreds, err := n.Keys.UserCreds("web", &perms, false)
	if err != nil {
		return nil, nil, err
	}
	adminCreds, err := n.Keys.UserCreds("relay-admin", nil, false)
	if err != nil {
		return nil, nil, err
	}
	webConn, err := n.Connect(webCreds, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("web user: %w", err)
	}
	r.conns = append(r.conns, webConn)
	adminConn, err := n.Connect(adminCreds, nats.Name("relay admin"))
	if err != nil {
		return nil, nil, fmt.Errorf("admin user: %w", err)
	}
	r.conns = append(r.conns, adminConn)
	js, _ := jetstream.New(adminConn)
	return webConn, js, nil
}

// startWarden holds each clinic's agents to clinics.AgentMaxConns
// connections on the embedded node, from its first moment.
func (r *Relay) startWarden() error {
	sysCreds, err := r.Node.Keys.UserCreds("relay-warden", nil, true)
	if err != nil {
		return err
	}
	sys, err := r.Node.Connect(sysCreds, nats.Name("relay warden"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("warden user: %w", err)
	}
	r.conns = append(r.conns, sys)
	r.Warden = &clinics.Warden{Sys: sys, Account: r.Node.Keys.AppPublicKey(), Logger: r.log}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.Warden.Start(ctx)
}

func (r *Relay) options() cjs.Options {
	return cjs.Options{Replicas: r.cfg.Replicas}
}

// HTTPURL is the web front's base URL.
func (r *Relay) HTTPURL() string {
	if r.cfg.HTTPSCert != "" {
		return "https://" + r.ln.Addr().String()
	}
	return "http://" + r.ln.Addr().String()
}

// AgentURL is where clinics' agents dial: PublicNATSURL, else NATSURL.
func (r *Relay) AgentURL() string { return cmp.Or(r.cfg.PublicNATSURL, r.NATSURL()) }

// NATSURL is where agents dial, or "" in external mode.
func (r *Relay) NATSURL() string {
	if r.Node == nil {
		return r.cfg.NATSURL
	}
	return r.Node.ClientURL()
}

// Serve serves HTTP until ctx ends and the server has stopped; the caller
// then stops what uses NATS and calls Shutdown.
func (r *Relay) Serve(ctx context.Context) error {
	err := r.web.Serve(ctx, r.ln)
	r.stopping.Store(true)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// ShutdownDrain bounds how long Shutdown waits for NATS connections to drain.
const ShutdownDrain = 5 * time.Second

// Shutdown stops HTTP, ends the booker's retries, drains NATS connections
// (at most ShutdownDrain), then stops the embedded server; safe to call more
// than once.
func (r *Relay) Shutdown() {
	r.stopping.Store(true)
	t0 := time.Now()
	if r.ln != nil {
		r.ln.Close()
	}
	if r.booker != nil {
		if n := r.booker.Stop(); n > 0 {
			r.log.Warn("undo of failed bookings abandoned at shutdown: their slots stay held until the hold lapses",
				"requests", n, "hold_ttl", r.cfg.HoldTTL)
		}
	}
	for _, nc := range r.conns {
		nc.Drain()
	}
	// Draining waits for replies in flight; a server that does not answer
	// would hold the stop for nats.go's 30 s per connection.
	deadline := time.Now().Add(ShutdownDrain)
	for _, nc := range r.conns {
		for nc.IsDraining() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		nc.Close()
	}
	r.conns = nil
	drained := time.Since(t0)
	if r.Node != nil {
		r.Node.Shutdown()
	}
	r.log.Info("relay stopped", "drain", drained.Round(time.Millisecond), "total", time.Since(t0).Round(time.Millisecond))
}

// AgentCreds mints creds for an in-process agent (the demo's and tests').
func (r *Relay) AgentCreds(clinic string) ([]byte, error) {
	if r.Node == nil {
		return nil, errors.New("agent creds need the embedded node's keys")
	}
	return r.Node.Keys.AgentCreds(clinic)
}
