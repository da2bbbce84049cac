package subjects

import (
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
	for _, p := range append(got.PubAllow, got.SubAllow...) {
		for _, bad := range []string{"$JS.>", "_INBOX.>", "$JS.API.STREAM.MSG.GET", "$JS.API.CONSUMER.CREATE"} {
			if strings.HasPrefix(p, bad) {
				t.Errorf("agent may not be granted %q (entry %q)", bad, p)
			}
		}
		if p == "$JS.API.DIRECT.GET.KV_AVAILABILITY" || p == "$JS.API.DIRECT.GET.KV_STATUS" {
			t.Errorf("bare direct get %q reads any key", p)
		}
		// STREAM.INFO of the KV streams is what nats.go needs to open a bucket;
		// the one grant not scoped to the clinic (see DESIGN.md).
		if !strings.Contains(p, "maple") && !strings.HasPrefix(p, "$JS.API.STREAM.INFO.KV_") {
			t.Errorf("entry %q is not scoped to the clinic", p)
		}
	}
}
