// Package node runs the embedded nats-server: JetStream stored in the data
// dir, JWT operator mode with a full account resolver, and a lock so that one
// process at a time owns the data dir.
package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/clinicrelay/clinicrelay/jetstream/auth"
)

// ErrRunning means another process owns the data dir (a relay is serving it).
var ErrRunning = errors.New("data dir is in use by a running relay")

// Config says where the node keeps its data and where it listens.
type Config struct {
	DataDir string
	// Listen is host:port for NATS clients (agents, the nats CLI); "" listens
	// nowhere and serves in-process connections only. Port 0 picks a free port.
	Listen string
	Logger *slog.Logger
	// EncryptionKey, when set, encrypts the JetStream store at rest
	// (ChaCha20-Poly1305). A store once encrypted refuses to start without it.
	EncryptionKey string
	// TLSCert and TLSKey, when set, make the NATS listener TLS only: a client
	// that does not speak TLS is refused. In-process connections need none.
	TLSCert, TLSKey string
}

// FileLimit is how many files the process may open, or 0 when unknown.
func FileLimit() uint64 { return fileLimit() }

// maxConns is how many client connections the server takes: half the
// process's file handles, so a flood of connections leaves the other half to
// JetStream's files and the web front's clients (at first "too many open
// files" JetStream fails its writes, and kept failing after the flood), and at
// most the server's default.
func maxConns(files uint64) int {
	if files == 0 {
		return server.DEFAULT_MAX_CONNECTIONS
	}
	return int(min(max(files/2, 64), server.DEFAULT_MAX_CONNECTIONS))
}

// ErrNeedsKey means the data dir's store is encrypted and no key was given.
var ErrNeedsKey = errors.New("the JetStream store in this data dir is encrypted: pass --encryption-key-file FILE or set CLINICRELAY_ENCRYPTION_KEY")

// encryptedMark is the file that says the store is encrypted, so that a start
// without the key stops instead of finding (and re-making) empty streams.
const encryptedMark = "jetstream.encrypted"

// Node is a running embedded server.
type Node struct {
	Keys *auth.Keys
	ns   *server.Server
	lock *os.File
	dir  string
}

// RunInfo is what a running relay leaves in the data dir for the relay command.
type RunInfo struct {
	NATSURL string `json:"nats_url"`
	HTTPURL string `json:"http_url,omitempty"`
	// TLSCert is the NATS listener's certificate file: the relay's commands
	// trust it when they dial NATSURL.
	TLSCert string `json:"tls_cert,omitempty"`
	// PublicNATSURL is where clinics' agents dial the relay
	// (--public-nats-url), when it is not NATSURL.
	PublicNATSURL string `json:"public_nats_url,omitempty"`
	PID           int    `json:"pid"`
}

// Lock takes the data dir's lock; ErrRunning when a live relay holds it.
func Lock(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "relay.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, ErrRunning
	}
	return f, nil
}

// ReadRunInfo reads what the running relay wrote.
func ReadRunInfo(dir string) (RunInfo, error) {
	var ri RunInfo
	b, err := os.ReadFile(filepath.Join(dir, "relay.json"))
	if err != nil {
		return ri, fmt.Errorf("relay.json: %w", err)
	}
	return ri, json.Unmarshal(b, &ri)
}

// WriteRunInfo records the running relay's URLs. The file outlives the
// relay (the lock says whether it runs), so commands run while it is down
// still print the address agents dial.
func (n *Node) WriteRunInfo(ri RunInfo) error {
	b, _ := json.Marshal(ri)
	return os.WriteFile(filepath.Join(n.dir, "relay.json"), b, 0o600)
}

// Start locks the data dir, loads or creates the keys, and starts the server.
func Start(cfg Config) (*Node, error) {
	lock, err := Lock(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n, err := start(cfg, lock)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return n, nil
}

func start(cfg Config, lock *os.File) (*Node, error) {
	mark := filepath.Join(cfg.DataDir, encryptedMark)
	if _, err := os.Stat(mark); err == nil && cfg.EncryptionKey == "" {
		return nil, ErrNeedsKey
	}
	if cfg.EncryptionKey != "" {
		if err := os.WriteFile(mark, []byte("the JetStream store is encrypted at rest\n"), 0o600); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}
	keys, err := auth.Open(filepath.Join(cfg.DataDir, "auth"))
	if err != nil {
		return nil, err
	}
	opts, err := options(cfg, keys)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	if cfg.Logger != nil {
		ns.SetLoggerV2(serverLog{cfg.Logger.With("component", "nats")}, false, false, false)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("nats server not ready in 30s")
	}
	return &Node{Keys: keys, ns: ns, lock: lock, dir: cfg.DataDir}, nil
}

func options(cfg Config, keys *auth.Keys) (*server.Options, error) {
	oc, err := keys.OperatorClaims()
	if err != nil {
		return nil, err
	}
	res, err := server.NewDirAccResolver(filepath.Join(cfg.DataDir, "resolver"), 0, time.Minute, server.NoDelete)
	if err != nil {
		return nil, fmt.Errorf("account resolver: %w", err)
	}
	for pub, token := range map[string]string{keys.SysPublicKey(): keys.SysJWT, keys.AppPublicKey(): keys.AppJWT()} {
		if err := res.Store(pub, token); err != nil {
			return nil, fmt.Errorf("account resolver: %w", err)
		}
	}
	opts := &server.Options{
		ServerName:       "relay",
		JetStream:        true,
		StoreDir:         filepath.Join(cfg.DataDir, "jetstream"),
		TrustedOperators: []*jwt.OperatorClaims{oc},
		SystemAccount:    keys.SysPublicKey(),
		AccountResolver:  res,
		NoSigs:           true,
		MaxPayload:       1 << 20,
		MaxConn:          maxConns(fileLimit()),
	}
	if cfg.EncryptionKey != "" {
		opts.JetStreamKey, opts.JetStreamCipher = cfg.EncryptionKey, server.ChaCha
	}
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey})
		if err != nil {
			return nil, fmt.Errorf("nats tls: %w", err)
		}
		opts.TLS, opts.TLSConfig, opts.TLSTimeout = true, tc, 2
	}
	if cfg.Listen == "" {
		opts.DontListen = true
		return opts, nil
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen %q: want host:port", cfg.Listen)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return nil, fmt.Errorf("nats listen %q: bad port", cfg.Listen)
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	opts.Host, opts.Port = host, p
	return opts, nil
}

// ClientURL is the URL agents dial, or "" when the node does not listen.
func (n *Node) ClientURL() string {
	if n.ns.Addr() == nil {
		return ""
	}
	return n.ns.ClientURL() // tls:// when the listener has TLS
}

// Connect opens a connection with creds, in-process when the node does not listen.
func (n *Node) Connect(creds []byte, opts ...nats.Option) (*nats.Conn, error) {
	co, err := auth.CredsOption(creds)
	if err != nil {
		return nil, err
	}
	opts = append([]nats.Option{co, nats.InProcessServer(n.ns)}, opts...)
	return nats.Connect("", opts...)
}

// Server exposes the embedded server for tests and metrics.
func (n *Node) Server() *server.Server { return n.ns }

// Shutdown stops the server and releases the data dir; safe to call twice.
func (n *Node) Shutdown() {
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
	}
	if n.lock != nil {
		n.lock.Close()
		n.lock = nil
	}
}
