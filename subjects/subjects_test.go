package subjects

import (
	"slices"
	"strings"
	"testing"
)

func TestValidClinicID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"maple", true},
		{"m1", true},
		{"maple-street-physio", true},
		{"a", false},
		{"", false},
		{"Maple", false},
		{"ma.ple", false},
		{"ma*", false},
		{"ma>", false},
		{"ma ple", false},
		{"-maple", false},
		{"ma_ple", false},
		{strings.Repeat("a", 40), true},
		{strings.Repeat("a", 41), false},
	}
	for _, tt := range tests {
		err := ValidClinicID(tt.id)
		if got := err == nil; got != tt.ok {
			t.Errorf("ValidClinicID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
	}
}

func TestValidSlotID(t *testing.T) {
	for id, ok := range map[string]bool{
		"dr-lee_20260102T0930Z": true,
		"p_20260102T0930Z":      true,
		"dr.lee_20260102T0930Z": false,
		"dr-lee_20260102T0930":  false,
		"_20260102T0930Z":       false,
		"dr-lee_2026-01-02":     false,
	} {
		if got := ValidSlotID(id) == nil; got != ok {
			t.Errorf("ValidSlotID(%q) ok = %v, want %v", id, got, ok)
		}
	}
}

// TestAgentPermissions is the literal list of DESIGN.md: any grant added or
// widened must change this test on purpose.
func TestAgentPermissions(t *testing.T) {
	want := Permissions{
		PubAllow: []string{
			"relay.agents.maple.consumer",
			"$JS.API.CONSUMER.INFO.REQUESTS.agent_maple",
			"$JS.API.CONSUMER.MSG.NEXT.REQUESTS.agent_maple",
			"$JS.ACK.REQUESTS.agent_maple.>",
			"$JS.ACK.*.*.REQUESTS.agent_maple.>",
			"relay.agents.maple.kv.*.*",
			"relay.agents.maple.audit",
			"relay.agents.maple.keys",
			"relay.agents.maple.portal",
			"relay.agents.maple.portal-grant",
			"$JS.API.DIRECT.GET.KV_AVAILABILITY.$KV.AVAILABILITY.maple.*",
			"$JS.API.DIRECT.GET.KV_STATUS.$KV.STATUS.maple.*",
			"$JS.API.DIRECT.GET.KV_CLINICS.$KV.CLINICS.maple.*",
			"$JS.API.DIRECT.GET.KV_HOLDS.$KV.HOLDS.maple.*",
			"$JS.API.DIRECT.GET.KV_CLINICS.$KV.CLINICS.maple",
		},
		SubAllow: []string{"_INBOX_maple.>"},
	}
	got := AgentPermissions("maple")
	if !slices.Equal(got.PubAllow, want.PubAllow) || !slices.Equal(got.SubAllow, want.SubAllow) {
		t.Errorf("AgentPermissions(maple) =\n%q\n%q\nwant\n%q\n%q", got.PubAllow, got.SubAllow, want.PubAllow, want.SubAllow)
	}
}

// TestAgentPermissions_Template: the signing key's template expands, per
// clinic tag, to exactly the clinic's list.
func TestAgentPermissions_Template(t *testing.T) {
	tmpl := AgentPermissions(AgentTemplate)
	got := AgentPermissions("maple")
	if len(tmpl.PubAllow) != len(got.PubAllow) {
		t.Fatalf("template has %d entries, expansion %d", len(tmpl.PubAllow), len(got.PubAllow))
	}
	for i, p := range tmpl.PubAllow {
		if want := strings.ReplaceAll(p, AgentTemplate, "maple"); got.PubAllow[i] != want {
			t.Errorf("entry %d: got %q, want %q", i, got.PubAllow[i], want)
		}
	}
}

// TestWebInboxPrefix: no clinic ID yields an agent inbox grant that covers
// the web front's inbox.
func TestWebInboxPrefix(t *testing.T) {
	clinic := strings.TrimPrefix(WebInboxPrefix, "_INBOX_")
	if ValidClinicID(clinic) == nil {
		t.Fatalf("a clinic called %q would be granted the web front's inbox", clinic)
	}
}
