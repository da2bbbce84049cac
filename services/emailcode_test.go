package services_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

// TestEmailCodes: the emailed code is good for its mailbox however written,
// at its clinic only, in its window and the next, and then no more; French
// patients get it in French.
func TestEmailCodes(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	var msgs []string
	e := &services.EmailCodes{Secret: []byte("k"), From: "relay@book.test", Now: func() time.Time { return now },
		Send: func(_ context.Context, to string, msg []byte) error {
			msgs = append(msgs, to+"\n"+string(msg))
			return nil
		}}
	maple := services.Clinic{ID: "maple", Name: "Maple Clinic"}
	if err := e.SendCode(context.Background(), maple, "Ada+x@Example.org", "fr"); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`Votre code : (\d{6})`).FindStringSubmatch(msgs[0])
	if m == nil || !strings.HasPrefix(msgs[0], "Ada+x@Example.org\n") {
		t.Fatalf("message:\n%s", msgs[0])
	}
	code := m[1]
	for _, tt := range []struct {
		clinic, email, code string
		after               time.Duration
		want                bool
	}{
		{"maple", "ada@example.org", code, 0, true},
		{"maple", "Ada+x@Example.org", code[:3] + "-" + code[3:], 0, true},
		{"maple", "ada@example.org", code, services.EmailCodeWindow, true},
		{"maple", "ada@example.org", code, 2 * services.EmailCodeWindow, false},
		{"oak", "ada@example.org", code, 0, false},
		{"maple", "bo@example.org", code, 0, false},
		{"maple", "ada@example.org", code[:5], 0, false},
	} {
		e.Now = func() time.Time { return now.Add(tt.after) }
		if got := e.Valid(tt.clinic, tt.email, tt.code); got != tt.want {
			t.Errorf("Valid(%s, %s, %s) %s later = %v, want %v", tt.clinic, tt.email, tt.code, tt.after, got, tt.want)
		}
	}
}
