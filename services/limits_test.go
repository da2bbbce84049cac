package services_test

import (
	"testing"

	"github.com/clinicrelay/clinicrelay/services"
)

// TestPendingKeys_OneFormEach: the ways of writing one address or number
// that reach the same patient give one key; different patients do not.
func TestPendingKeys_OneFormEach(t *testing.T) {
	for _, tt := range []struct{ a, b string }{
		{"Ada@Example.org", "ada@example.org"},
		{"ada+2@example.org", "ada@example.org"},
		{"ADA+clinic+x@Example.ORG", "ada@example.org"},
		{"a.da@gmail.com", "ada@gmail.com"},
		{"A.d.a+1@googlemail.com", "ada@gmail.com"},
	} {
		if a, b := services.CanonicalEmail(tt.a), services.CanonicalEmail(tt.b); a != b {
			t.Errorf("CanonicalEmail(%q) = %q, CanonicalEmail(%q) = %q: want the same", tt.a, a, tt.b, b)
		}
	}
	for _, tt := range []struct{ a, b string }{
		{"a.da@example.org", "ada@example.org"}, // dots matter outside Gmail
		{"ada@example.org", "ada@example.com"},
	} {
		if a, b := services.CanonicalEmail(tt.a), services.CanonicalEmail(tt.b); a == b {
			t.Errorf("CanonicalEmail(%q) = CanonicalEmail(%q) = %q: want two mailboxes", tt.a, tt.b, a)
		}
	}

	for _, tt := range []struct{ phone, country, want string }{
		{"416-555-0199", "CA", "+14165550199"},
		{"1 416 555 0199", "CA", "+14165550199"},
		{"+1 (416) 555-0199", "CA", "+14165550199"},
		{"+1 416 555 0199", "FR", "+14165550199"}, // a country code wins over the clinic's
		{"06 12 34 56 78", "FR", "+33612345678"},
		{"+33 6 12 34 56 78", "CA", "+33612345678"},
		{"0033 6 12 34 56 78", "FR", "+33612345678"},
		{"416-555-0199", "", "4165550199"}, // a clinic of no country: its digits
		{"999999999999999", "CA", "999999999999999"},
	} {
		if got := services.CanonicalPhone(tt.phone, tt.country); got != tt.want {
			t.Errorf("CanonicalPhone(%q, %q) = %q, want %q", tt.phone, tt.country, got, tt.want)
		}
	}

	a := services.PendingKeys(services.Request{Email: "Ada+2@example.org", Phone: "416 555 0199"}, "CA")
	b := services.PendingKeys(services.Request{Email: "ada@example.org", Phone: "+14165550199"}, "CA")
	if len(a) != 2 || a[0] != b[0] || a[1] != b[1] {
		t.Errorf("PendingKeys: %v and %v, want the same keys", a, b)
	}
}

func TestClinic_Country(t *testing.T) {
	for zone, want := range map[string]string{
		"America/Toronto": "CA", "America/New_York": "US", "Europe/Paris": "FR", "Asia/Kolkata": "IN", "UTC": "",
	} {
		if got := (services.Clinic{TimeZone: zone}).Country(); got != want {
			t.Errorf("Country(%s) = %q, want %q", zone, got, want)
		}
	}
}
