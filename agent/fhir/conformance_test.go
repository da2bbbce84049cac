package fhir_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/clinicrelay/clinicrelay/agent/connector/connectortest"
)

// TestConformance: the FHIR connector against a real FHIR server keeps the
// connector contract (agent/connector/connectortest).
func TestConformance(t *testing.T) {
	connectortest.Run(t, func(t *testing.T) connectortest.Fixture {
		p := newPMS(t)
		return connectortest.Fixture{Conn: p.conn, Loc: toronto, Slot: p.free(t)[0],
			Book: func(ctx context.Context, requestID string) error {
				a := p.Appointment(requestID)
				a["status"] = "booked"
				if code := p.Update(a); code != 200 {
					return fmt.Errorf("book in the PMS: %d", code)
				}
				return p.conn.Poll(ctx)
			}}
	})
}
