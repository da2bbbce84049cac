package connectortest_test

import (
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/connector/connectortest"
	"github.com/clinicrelay/clinicrelay/services"
)

// TestMemory: the in-memory connector keeps the contract, so the agent's
// own tests can stand on it.
func TestMemory(t *testing.T) {
	loc, _ := time.LoadLocation("America/Toronto")
	connectortest.Run(t, func(t *testing.T) connectortest.Fixture {
		tomorrow := services.Today(time.Now(), loc).AddDate(0, 0, 1)
		start := time.Date(tomorrow.Year(), tomorrow.Month(), tomorrow.Day(), 9, 0, 0, 0, loc)
		slot := services.Slot{ID: services.SlotID("dr-lee", start), ProviderID: "dr-lee", Start: start.UTC(),
			End: start.Add(30 * time.Minute).UTC()}
		m := connectortest.NewMemory([]services.Provider{{ID: "dr-lee", Name: "Dr. Lee"}}, []services.Slot{slot})
		m.SetClinic(services.Clinic{ID: "maple", Name: "Maple", TimeZone: "America/Toronto"})
		return connectortest.Fixture{Conn: m, Loc: loc, Slot: slot, Book: m.Book}
	})
}
