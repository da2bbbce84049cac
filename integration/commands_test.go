package integration

import (
	"context"
	"io"
	"testing"

	"github.com/clinicrelay/clinicrelay/cmd/relay/app"
)

func runRelay(t *testing.T, args []string, stdout, stderr io.Writer) int {
	t.Helper()
	return app.Main(context.Background(), args, stdout, stderr)
}
