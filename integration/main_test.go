package integration

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/clinicrelay/clinicrelay/cmd/relay/app"
)

// relayChildEnv, set to 1, makes the test binary run the relay command line
// with its arguments instead of the tests: the fault suite runs the relay as
// a real process it can SIGKILL.
const relayChildEnv = "CLINICRELAY_TEST_RELAY"

func TestMain(m *testing.M) {
	if os.Getenv(relayChildEnv) == "1" {
		os.Exit(relayChild())
	}
	os.Exit(m.Run())
}

// relayChild runs `relay` like cmd/relay's main, and also stops when its
// stdin closes, so a relay never outlives the test that started it.
func relayChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	return app.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
}
