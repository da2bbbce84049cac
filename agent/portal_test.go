package agent

import "testing"

// TestDetailsLimits: the details of one address are given DetailsPerEmail
// times an hour, whoever asks; another address still gets its own.
func TestDetailsLimits(t *testing.T) {
	var l detailsLimits
	for i := range DetailsPerEmail {
		if !l.allow("Ada@example.org") {
			t.Fatalf("ask %d refused", i+1)
		}
	}
	if l.allow(" ada@example.org") {
		t.Fatalf("ask %d for one address within the hour allowed", DetailsPerEmail+1)
	}
	if !l.allow("bo@example.org") {
		t.Fatal("another address refused")
	}
}
