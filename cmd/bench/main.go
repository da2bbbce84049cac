// Command bench measures clinicrelay on this machine beside the engines under
// it, raw JetStream and bare Echo, in one run: see docs/benchmarks.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata"

	"github.com/clinicrelay/clinicrelay/cmd/bench/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
