package web

import (
	"testing"
	"time"
)

func TestSlotCache(t *testing.T) {
	var c slotCache
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	if _, ok := c.get("maple/a/b", 1, t0); ok {
		t.Fatal("hit on an empty cache")
	}
	c.put("maple/a/b", 1, t0, []byte("one"))
	for _, tt := range []struct {
		name    string
		version uint64
		at      time.Time
		hit     bool
	}{
		{"same version, within the second", 1, t0.Add(999 * time.Millisecond), true},
		{"clinic changed", 2, t0, false},
		{"a second later", 1, t0.Add(slotCacheFor), false},
	} {
		if body, ok := c.get("maple/a/b", tt.version, tt.at); ok != tt.hit || ok && string(body) != "one" {
			t.Errorf("%s: got %q %v, want hit %v", tt.name, body, ok, tt.hit)
		}
	}
	for i := range slotCacheSize {
		c.put(string(rune('a'+i%26))+time.Duration(i).String(), 1, t0, nil)
	}
	if len(c.m) > slotCacheSize {
		t.Errorf("cache holds %d answers, want at most %d", len(c.m), slotCacheSize)
	}
}
