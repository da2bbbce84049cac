package relay

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/agent"
	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/agent/console/staff"
	"github.com/clinicrelay/clinicrelay/jetstream/clinics"
	"github.com/clinicrelay/clinicrelay/services"
)

// DemoClinic is the clinic `relay demo` onboards and runs an agent for.
var DemoClinic = services.Clinic{ID: "demo", Name: "Demo Family Clinic", TimeZone: "America/Toronto"}

// Admin returns an operator handle on the embedded node.
func (r *Relay) Admin(ctx context.Context) (*clinics.Admin, error) {
	if r.Node == nil {
		return nil, fmt.Errorf("admin needs the embedded node")
	}
	sysCreds, err := r.Node.Keys.UserCreds("relay-sys", nil, true)
	if err != nil {
		return nil, err
	}
	sys, err := r.Node.Connect(sysCreds)
	if err != nil {
		return nil, err
	}
	r.conns = append(r.conns, sys)
	adminCreds, err := r.Node.Keys.UserCreds("relay-admin", nil, false)
	if err != nil {
		return nil, err
	}
	nc, err := r.Node.Connect(adminCreds)
	if err != nil {
		return nil, err
	}
	r.conns = append(r.conns, nc)
	js, _ := jetstream.New(nc)
	return &clinics.Admin{JS: js, Sys: sys, Keys: r.Node.Keys}, nil
}

// Demo is the demo clinic's agent and front-desk console, running.
type Demo struct {
	ConsoleAddr string // where the console listens
	// User and Password sign in at the console: an admin, with a password
	// made anew at each start (the demo's data is not for real patients).
	User, Password string
	Stop           func() // stops the agent and the console
}

// DemoUser is the demo console's admin.
const DemoUser = "demo-admin"

// StartDemo onboards the demo clinic (once) and runs its agent on the
// console connector in this process, dialling NATS like a real agent.
func (r *Relay) StartDemo(ctx context.Context, dir, consoleAddr string) (Demo, error) {
	// Listen first: a console address in use stops the demo with a clear
	// error, and the address printed is the one bound (port 0 picks one).
	ln, err := net.Listen("tcp", consoleAddr)
	if err != nil {
		return Demo{}, fmt.Errorf("demo console: %w (pass --console ADDR)", err)
	}
	d, err := r.startDemo(ctx, dir, ln)
	if err != nil {
		ln.Close()
		return Demo{}, err
	}
	d.ConsoleAddr = ln.Addr().String()
	return d, nil
}

func (r *Relay) startDemo(ctx context.Context, dir string, ln net.Listener) (Demo, error) {
	a, err := r.Admin(ctx)
	if err != nil {
		return Demo{}, err
	}
	c := DemoClinic
	c.CreatedAt = time.Now().UTC()
	if _, err := a.Add(ctx, c); err != nil && !strings.Contains(err.Error(), "already exists") {
		return Demo{}, err
	}
	creds, err := r.AgentCreds(c.ID)
	if err != nil {
		return Demo{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Demo{}, err
	}
	key, old, err := agent.LoadSealKeys(filepath.Join(dir, "seal.nk"))
	if err != nil {
		return Demo{}, err
	}
	pub, _ := key.PublicKey()
	storeKey, err := demoConsoleKey(dir)
	if err != nil {
		return Demo{}, err
	}
	con, err := console.Open(console.Config{Path: filepath.Join(dir, "console.db"), Addr: ln.Addr().String(), SealKey: pub,
		Logger: r.log.With("component", "console"), Key: storeKey})
	if err != nil {
		return Demo{}, err
	}
	if err := con.SeedDemo(ctx); err != nil {
		con.Close()
		return Demo{}, err
	}
	pw := demoPassword()
	if err := con.Staff().Put(DemoUser, staff.RoleAdmin, nil, pw); err != nil {
		con.Close()
		return Demo{}, err
	}
	ag, err := agent.New(agent.Config{NATSURL: r.NATSURL(), Creds: creds, Logger: r.log.With("component", "agent"),
		SealKey: key, OldSealKeys: old}, con)
	if err != nil {
		con.Close()
		return Demo{}, err
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { con.Serve(actx, ln); done <- struct{}{} }()
	go func() { ag.Run(actx); done <- struct{}{} }()
	stop := func() { cancel(); <-done; <-done; con.Close() }
	return Demo{User: DemoUser, Password: pw, Stop: stop}, nil
}

// demoConsoleKey is the demo console's store key, in dir/console.key (made
// on first start): the demo seals its store as a clinic would, though with
// the key beside it.
func demoConsoleKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, "console.key")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		b = []byte(console.NewKey() + "\n")
		err = os.WriteFile(path, b, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("demo console key: %w", err)
	}
	return console.ParseKey(string(b))
}

// demoPassword is a new password for the demo's admin: 20 characters of
// base32 in groups of five.
func demoPassword() string {
	t := rand.Text()[:20]
	return t[:5] + "-" + t[5:10] + "-" + t[10:15] + "-" + t[15:]
}
