package keybox

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

func TestBox(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	b, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	sealed := b.Seal([]byte{0x01}, "maple.1", []byte("ada@example.org"))
	if sealed[0] != 0x01 || bytes.Contains(sealed, []byte("ada")) {
		t.Fatalf("sealed %q: want the prefix, then no clear text", sealed)
	}
	if got, err := b.Open("maple.1", sealed[1:]); err != nil || string(got) != "ada@example.org" {
		t.Fatalf("open: %q %v", got, err)
	}
	if bytes.Equal(b.Seal(nil, "maple.1", []byte("x")), b.Seal(nil, "maple.1", []byte("x"))) {
		t.Fatal("two seals of one value are equal: no fresh nonce")
	}
	other, _ := New(make([]byte, 32))
	for name, open := range map[string]func() ([]byte, error){
		"another name":  func() ([]byte, error) { return b.Open("maple.2", sealed[1:]) },
		"another key":   func() ([]byte, error) { return other.Open("maple.1", sealed[1:]) },
		"truncated":     func() ([]byte, error) { return b.Open("maple.1", sealed[1:5]) },
		"tampered with": func() ([]byte, error) { s := bytes.Clone(sealed[1:]); s[len(s)-1] ^= 1; return b.Open("maple.1", s) },
	} {
		if _, err := open(); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: %v, want ErrOpen", name, err)
		}
	}
	if _, err := New(key[:16]); err == nil {
		t.Error("a 16-byte key taken")
	}
}
