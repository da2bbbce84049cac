// Command clinic-agent runs inside a clinic: it dials out to the relay,
// drains the clinic's requests and publishes its free slots.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // clinic zones must load on any host, distroless included

	"github.com/clinicrelay/clinicrelay/cmd/clinic-agent/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
