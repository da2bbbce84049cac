package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// TestAudit: each step of the loop leaves its event in AUDIT, with IDs and
// actors and never patient data; `relay audit` prints them as text, JSON or
// FHIR AuditEvents; AUDIT refuses delete and purge.
func TestAudit(t *testing.T) {
	env := NewEnv(t)
	ag := env.MustStartAgent(env.MustAddClinic("alder"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	var created map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/alder/requests", validRequest(firstSlot(t, web, "alder")), &created); code != 201 {
		t.Fatalf("create: %d", code)
	}
	awaitState(t, web, created["token"], "delivered")
	desk := ag.Desk(t) // the front desk opens the request, then confirms it
	if code := desk.JSON("GET", "/api/requests/"+created["id"], nil, nil); code != 200 {
		t.Fatalf("open: %d", code)
	}
	if code := desk.JSON("POST", "/api/requests/"+created["id"]+"/confirm", nil, nil); code != 200 {
		t.Fatalf("confirm: %d", code)
	}
	awaitState(t, web, created["token"], "booked")
	if code, _, stderr := relayCmd(t, "creds", "operator", "--out", filepath.Join(t.TempDir(), "op.creds"), "--data", env.DataDir); code != 0 {
		t.Fatal(stderr)
	}

	want := map[string]string{ // action -> actor
		services.AuditCredsIssued: "operator", services.AuditRequestCreated: "patient",
		services.AuditRequestOpened: "agent", services.AuditRequestDelivered: "agent",
		services.AuditOutcomeSet: "agent", services.AuditStatusViewed: "patient",
		services.AuditRequestViewed: "staff", services.AuditRequestDecided: "staff",
	}
	var out string
	poll.For(t, 10*time.Second, func() error {
		code, o, stderr := relayCmd(t, "audit", "--clinic", "alder", "--format", "json", "--data", env.DataDir)
		if code != 0 {
			return fmt.Errorf("audit: %d %s", code, stderr)
		}
		out = o
		seen := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(o), "\n") {
			var ev services.AuditEvent
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				return fmt.Errorf("line %q: %v", line, err)
			}
			if actor, ok := want[ev.Action]; ok && ev.Actor == actor && ev.Clinic == "alder" {
				seen[ev.Action] = true
			}
			if ev.Action == services.AuditRequestCreated && (ev.IP != "127.0.0.1" || ev.RequestID != created["id"]) {
				return fmt.Errorf("created event without the client's IP or the request: %+v", ev)
			}
			if ev.Action == services.AuditOutcomeSet && ev.Detail != string(services.StateBooked) {
				return fmt.Errorf("outcome event %+v, want booked", ev)
			}
			if ev.Actor == "staff" && (ev.User != "desk-admin" || ev.RequestID != created["id"]) {
				return fmt.Errorf("staff event %+v, want desk-admin's on the request", ev)
			}
		}
		for action := range want {
			if !seen[action] {
				return fmt.Errorf("no %s event in %s", action, o)
			}
		}
		return nil
	})
	for _, v := range phi {
		if strings.Contains(out, v) {
			t.Errorf("the audit trail shows %q", v)
		}
	}
	if _, o, _ := relayCmd(t, "audit", "--clinic", "alder", "--format", "fhir", "--data", env.DataDir); !strings.Contains(o, `"resourceType":"AuditEvent"`) {
		t.Errorf("fhir format: %.300s", o)
	}
	if _, o, _ := relayCmd(t, "audit", "--clinic", "_relay", "--data", env.DataDir); !strings.Contains(o, services.AuditCredsIssued) {
		t.Errorf("the relay's trail lacks the operator creds: %q", o)
	}

	ctx := context.Background()
	s, err := env.Admin.JS.Stream(ctx, subjects.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	if err := s.DeleteMsg(ctx, info.State.FirstSeq); err == nil {
		t.Error("an AUDIT event was deleted")
	}
	if err := s.Purge(ctx); err == nil {
		t.Error("AUDIT was purged")
	}
	if after, _ := s.Info(ctx); after.State.Msgs != info.State.Msgs {
		t.Errorf("AUDIT holds %d events, had %d", after.State.Msgs, info.State.Msgs)
	}
}
