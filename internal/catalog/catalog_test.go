package catalog_test

import (
	"regexp"
	"testing"

	"github.com/clinicrelay/clinicrelay/internal/catalog"
)

var verb = regexp.MustCompile(`%(\[\d+\])?[a-z]`)

// TestCatalog_Languages: every language has every key of the default, and
// each text takes the same arguments as the default's.
func TestCatalog_Languages(t *testing.T) {
	all := catalog.All()
	def := all[catalog.Languages[0]]
	if len(def) < 100 {
		t.Fatalf("the default language has only %d texts", len(def))
	}
	for _, l := range catalog.Languages[1:] {
		for k, v := range def {
			got, ok := all[l][k]
			if !ok {
				t.Errorf("%s: no %q", l, k)
				continue
			}
			if a, b := len(verb.FindAllString(v, -1)), len(verb.FindAllString(got, -1)); a != b {
				t.Errorf("%s: %q takes %d arguments, the default %d", l, k, b, a)
			}
		}
		for k := range all[l] {
			if _, ok := def[k]; !ok {
				t.Errorf("%s: %q is not in the default language", l, k)
			}
		}
	}
}

func TestT(t *testing.T) {
	if got := catalog.T("fr", "notice.booked.subject", "Maple"); got != "Votre rendez-vous à Maple est confirmé" {
		t.Errorf("T = %q", got)
	}
	if got := catalog.T("de", "notice.booked.subject", "Maple"); got != "Your appointment at Maple is confirmed" {
		t.Errorf("an unknown language: %q, want the default's", got)
	}
	if got := catalog.N("fr", "clinic.free", 0); got == catalog.N("fr", "clinic.free", 2) {
		t.Errorf("French 0 and 2 take the same form: %q", got)
	}
	if catalog.Lang("xx") != "en" || catalog.Lang("fr") != "fr" {
		t.Error("Lang")
	}
}
