package relay

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/agent"
	"github.com/clinicrelay/clinicrelay/agent/console"
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

// StartDemo onboards the demo clinic (once) and runs its agent on the
// console connector in this process, dialling NATS like a real agent.
func (r *Relay) StartDemo(ctx context.Context, dir, consoleAddr string) (addr string, stop func(), err error) {
	// Listen first: a console address in use stops the demo with a clear
	// error, and the address printed is the one bound (port 0 picks one).
	ln, err := net.Listen("tcp", consoleAddr)
	if err != nil {
		return "", nil, fmt.Errorf("demo console: %w (pass --console ADDR)", err)
	}
	stop, err = r.startDemo(ctx, dir, ln)
	if err != nil {
		ln.Close()
		return "", nil, err
	}
	return ln.Addr().String(), stop, nil
}

func (r *Relay) startDemo(ctx context.Context, dir string, ln net.Listener) (stop func(), err error) {
	a, err := r.Admin(ctx)
	if err != nil {
		return nil, err
	}
	c := DemoClinic
	c.CreatedAt = time.Now().UTC()
	if _, err := a.Add(ctx, c); err != nil && !strings.Contains(err.Error(), "already exists") {
		return nil, err
	}
	creds, err := r.AgentCreds(c.ID)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, old, err := agent.LoadSealKeys(filepath.Join(dir, "seal.nk"))
	if err != nil {
		return nil, err
	}
	pub, _ := key.PublicKey()
	con, err := console.Open(console.Config{Path: filepath.Join(dir, "console.db"), Addr: ln.Addr().String(), SealKey: pub,
		Logger: r.log.With("component", "console")})
	if err != nil {
		return nil, err
	}
	if err := con.SeedDemo(ctx); err != nil {
		con.Close()
		return nil, err
	}
	ag, err := agent.New(agent.Config{NATSURL: r.NATSURL(), Creds: creds, Logger: r.log.With("component", "agent"),
		SealKey: key, OldSealKeys: old}, con)
	if err != nil {
		con.Close()
		return nil, err
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { con.Serve(actx, ln); done <- struct{}{} }()
	go func() { ag.Run(actx); done <- struct{}{} }()
	return func() { cancel(); <-done; <-done; con.Close() }, nil
}
