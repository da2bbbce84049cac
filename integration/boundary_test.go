package integration

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// deps lists the import paths that the packages matching patterns depend on,
// themselves included, as `go list -deps` run from the module root sees them.
func deps(t *testing.T, patterns ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-deps"}, patterns...)...)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps %s: %v\n%s", strings.Join(patterns, " "), err, ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v", strings.Join(patterns, " "), err)
	}
	return strings.Fields(string(out))
}

// TestBoundary is our deptest (Tailscale's tstest/deptest): services and
// subjects speak no transport, the web front and the connectors no NATS, and
// the NATS adapters import nothing that wires them.
func TestBoundary(t *testing.T) {
	const module = "github.com/clinicrelay/clinicrelay/"
	tests := []struct {
		name      string
		patterns  []string
		mustList  []string // proves the patterns matched what we mean to check
		forbidden []string // import paths, each with everything below it
	}{
		{
			name:      "services and subjects",
			patterns:  []string{"./services/...", "./subjects/..."},
			mustList:  []string{module + "services", module + "subjects"},
			forbidden: []string{"github.com/labstack/echo/v4", "github.com/nats-io/nats.go", "github.com/nats-io/nats-server"},
		},
		{
			name:      "web",
			patterns:  []string{"./web/..."},
			mustList:  []string{module + "web", "github.com/labstack/echo/v4"},
			forbidden: []string{"github.com/nats-io/nats-server", "github.com/nats-io/nats.go", module + "jetstream"},
		},
		{
			// A connector speaks to the clinic's system; the agent alone
			// speaks NATS (agent/connector is the contract between them).
			name:     "connectors",
			patterns: []string{"./agent/connector/...", "./agent/console/...", "./agent/fhir"},
			mustList: []string{module + "agent/connector", module + "agent/console", module + "agent/fhir"},
			forbidden: []string{"github.com/nats-io/nats.go", "github.com/nats-io/nats-server", "github.com/nats-io/jwt/v2",
				module + "jetstream"},
		},
		{
			// The adapters sit below what wires them: the relay and the
			// agent import jetstream, never the other way round.
			name:      "jetstream adapters",
			patterns:  []string{"./jetstream/..."},
			mustList:  []string{module + "jetstream", module + "jetstream/readmodel", module + "jetstream/notify"},
			forbidden: []string{module + "web", module + "relay", module + "agent", module + "cmd"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := deps(t, tt.patterns...)
			for _, p := range tt.mustList {
				if !slices.Contains(got, p) {
					t.Errorf("go list -deps %v does not list %s", tt.patterns, p)
				}
			}
			var bad []string
			for _, dep := range got {
				for _, root := range tt.forbidden {
					if dep == root || strings.HasPrefix(dep, root+"/") {
						bad = append(bad, dep)
					}
				}
			}
			if len(bad) > 0 {
				t.Errorf("%v depend on %d forbidden packages (any of %v):\n\t%s",
					tt.patterns, len(bad), tt.forbidden, strings.Join(bad, "\n\t"))
			}
		})
	}
}
