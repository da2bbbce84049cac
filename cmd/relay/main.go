// Command relay runs clinicrelay: the embedded NATS node and the patients'
// web front (serve, demo), and administers clinics and operator creds.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // clinic zones must load on any host, distroless included

	"github.com/clinicrelay/clinicrelay/cmd/relay/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
