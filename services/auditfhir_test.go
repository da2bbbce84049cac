package services_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

func TestAuditEvent_FHIR(t *testing.T) {
	at := time.Date(2026, 3, 2, 15, 4, 5, 6_000_000, time.FixedZone("EST", -5*3600))
	for _, tt := range []struct {
		ev         services.AuditEvent
		action     string
		requestor  bool
		entity, ip bool
	}{
		{services.AuditEvent{At: at, Clinic: "maple", Action: services.AuditRequestCreated, Actor: "patient",
			RequestID: "r1", IP: "192.0.2.7"}, "C", true, true, true},
		{services.AuditEvent{At: at, Clinic: "maple", Action: services.AuditOutcomeSet, Actor: "agent", RequestID: "r1",
			Detail: "booked"}, "U", true, true, false},
		{services.AuditEvent{At: at, Clinic: "maple", Action: services.AuditClinicPurged, Actor: "relay"}, "D", false, false, false},
		{services.AuditEvent{At: at, Clinic: "maple", Action: services.AuditStatusViewed, Actor: "patient", RequestID: "r1"}, "R", true, true, false},
		{services.AuditEvent{At: at, Clinic: "maple", Action: services.AuditRequestDecided, Actor: "staff", User: "ana",
			RequestID: "r1", Detail: "booked"}, "U", true, true, false},
		{services.AuditEvent{At: at, Clinic: "maple", Action: services.AuditRequestViewed, Actor: "staff", User: "ana",
			RequestID: "r1"}, "R", true, true, false},
	} {
		r := tt.ev.FHIR()
		b, _ := json.Marshal(r)
		got := string(b)
		if r["resourceType"] != "AuditEvent" || r["action"] != tt.action || r["recorded"] != "2026-03-02T20:04:05.006Z" {
			t.Errorf("%s: %s", tt.ev.Action, got)
		}
		agent := r["agent"].([]any)[0].(map[string]any)
		if agent["requestor"] != tt.requestor {
			t.Errorf("%s: requestor %v", tt.ev.Action, agent["requestor"])
		}
		if _, ok := r["entity"]; ok != tt.entity {
			t.Errorf("%s: entity %v", tt.ev.Action, ok)
		}
		if strings.Contains(got, "192.0.2.7") != tt.ip {
			t.Errorf("%s: the client's address in %s", tt.ev.Action, got)
		}
		if who := agent["who"].(map[string]any)["display"]; tt.ev.User != "" && who != "staff ana" {
			t.Errorf("%s: who %v, want the staff user", tt.ev.Action, who)
		}
		if strings.Contains(got, "booked") {
			t.Errorf("the detail leaks into the resource: %s", got)
		}
	}
}
