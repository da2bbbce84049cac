package console_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/connector/connectortest"
	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/services"
)

// TestConformance: the console keeps the connector contract
// (agent/connector/connectortest), on the wall clock and the demo providers.
func TestConformance(t *testing.T) {
	loc := mustZone("America/Toronto")
	connectortest.Run(t, func(t *testing.T) connectortest.Fixture {
		c, err := console.Open(console.Config{Path: filepath.Join(t.TempDir(), "console.db"), Addr: "127.0.0.1:0",
			Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetClinic(services.Clinic{ID: "maple", Name: "Maple Clinic", TimeZone: "America/Toronto"})
		if err := c.SeedDemo(t.Context()); err != nil {
			t.Fatal(err)
		}
		tomorrow := services.Today(time.Now(), loc).AddDate(0, 0, 1)
		_, slots, err := c.FreeSlots(t.Context(), tomorrow, tomorrow.AddDate(0, 0, connectortest.Days-1), loc)
		if err != nil || len(slots) == 0 {
			t.Fatalf("no free slot in the demo schedule: %v", err)
		}
		return connectortest.Fixture{Conn: c, Loc: loc, Slot: slots[0],
			Book: func(ctx context.Context, requestID string) error {
				_, err := c.Confirm(ctx, requestID)
				return err
			}}
	})
}
