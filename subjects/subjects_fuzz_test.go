package subjects

import (
	"strings"
	"testing"
)

// FuzzValidIDs feeds every ID validator the same string: none panics, and an
// ID one accepts is a single, safe subject token that stays one token in the
// subjects and keys built from it.
func FuzzValidIDs(f *testing.F) {
	for _, s := range []string{"maple", "dr-lee", "0123456789abcdef0123456789abcdef", "dr-lee_20260302T1430Z",
		"", "a", "-maple", "Maple", "maple.oak", "maple*", "clinic.>", "maple ", "maple\n", "mapl\u00e9",
		"x\xff", strings.Repeat("a", 41), "0123456789ABCDEF0123456789ABCDEF", "dr-lee_20260302T1430Z\n"} {
		f.Add(s)
	}
	validators := []struct {
		name     string
		valid    func(string) error
		min, max int
		builds   func(string) string // a subject or key with the ID as one of its tokens; nil if none
	}{
		{"clinic", ValidClinicID, 2, 40, Requests},
		{"provider", ValidProviderID, 1, 40, nil}, // goes into subjects only inside a slot ID
		{"request", ValidRequestID, 32, 32, func(id string) string { return KVSubject(BucketStatus, StatusKey("maple", id)) }},
		{"slot", ValidSlotID, 16, 55, func(id string) string { return KVSubject(BucketHolds, HoldKey("maple", id)) }},
	}
	f.Fuzz(func(t *testing.T, id string) {
		for _, v := range validators {
			err := v.valid(id)
			if err != nil {
				if strings.ContainsAny(err.Error()[:1], "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
					t.Errorf("%s: error %q is not lower-case", v.name, err)
				}
				continue
			}
			if len(id) < v.min || len(id) > v.max {
				t.Errorf("%s id %q accepted with %d bytes, want %d-%d", v.name, id, len(id), v.min, v.max)
			}
			for _, c := range []byte(id) {
				if c <= ' ' || c >= 0x7f || strings.IndexByte(".*>", c) >= 0 {
					t.Errorf("%s id %q accepted with byte %q, unsafe in a subject", v.name, id, c)
				}
			}
			if v.builds == nil {
				continue
			}
			tokens := strings.Split(v.builds(id), ".")
			n := 0
			for _, tok := range tokens {
				if tok == id {
					n++
				}
			}
			if n == 0 || tokens[0] == "" || tokens[len(tokens)-1] == "" {
				t.Errorf("%s id %q is not one token of %q", v.name, id, v.builds(id))
			}
		}
	})
}
