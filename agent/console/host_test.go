package console_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/clinicrelay/clinicrelay/agent/console"
)

// TestConsole_HostGuard: a request addressed to a foreign host name (DNS
// rebinding) gets nothing; IP literals, localhost and configured names
// reach the console (which asks them to sign in).
func TestConsole_HostGuard(t *testing.T) {
	c, err := console.Open(console.Config{Path: filepath.Join(t.TempDir(), "c.db"), AllowedHosts: []string{"Desk.Maple.LAN"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for host, want := range map[string]int{
		"127.0.0.1:8081":      http.StatusUnauthorized,
		"[::1]:8081":          http.StatusUnauthorized,
		"localhost:8081":      http.StatusUnauthorized,
		"192.168.1.20":        http.StatusUnauthorized,
		"desk.maple.lan:8081": http.StatusUnauthorized,
		"evil.example:8081":   http.StatusMisdirectedRequest,
		"maple.lan":           http.StatusMisdirectedRequest,
	} {
		req := httptest.NewRequest("GET", "/api/requests", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		c.Handler().ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Host %s: got %d, want %d", host, rec.Code, want)
		}
	}
}
