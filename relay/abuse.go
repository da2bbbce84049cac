package relay

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/web"
)

// Abuse is how the relay throttles patients (docs/security.md, "Abuse").
type Abuse struct {
	// Limits are the web front's rate limits (zero: web's defaults).
	Limits web.Limits
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client; with none, the client is the connection's peer.
	TrustedProxies []netip.Prefix
	// MaxPending caps the requests not yet final per email and per phone
	// per clinic (0: services.DefaultMaxPending).
	MaxPending int
	// Off turns rate limits and the pending cap off (load tests).
	Off bool
}

// pendingKeyEnv may hold the secret of the pending cap's HMAC; every relay
// on one NATS must share it.
const pendingKeyEnv = "CLINICRELAY_PENDING_KEY"

// pendingKeyFile is where the relay keeps that secret otherwise: DATA/pending.key.
const pendingKeyFile = "pending.key"

// webLimits are the rate limits the web front gets.
func (a Abuse) webLimits() web.Limits {
	l := a.Limits
	l.Off = l.Off || a.Off
	return l
}

// pendingCap is the Booker's pending cap over js, nil when abuse limits
// are off.
func (r *Relay) pendingCap(js jetstream.JetStream) (services.Pending, error) {
	if r.cfg.Abuse.Off {
		return nil, nil
	}
	secret, err := pendingSecret(r.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	return cjs.NewPending(js, secret, r.cfg.Abuse.MaxPending, r.cfg.Now), nil
}

// pendingSecret is $CLINICRELAY_PENDING_KEY, else DATA/pending.key, made
// (32 random bytes, file mode 0600) when missing. It is kept off NATS: with
// the store alone, no one can test an address against PENDING's keys.
func pendingSecret(dir string) ([]byte, error) {
	if k := strings.TrimSpace(os.Getenv(pendingKeyEnv)); k != "" {
		if len(k) < 16 {
			return nil, fmt.Errorf("%s must be at least 16 characters", pendingKeyEnv)
		}
		return []byte(k), nil
	}
	path := filepath.Join(dir, pendingKeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		if k := strings.TrimSpace(string(b)); len(k) >= 16 {
			return []byte(k), nil
		}
		return nil, fmt.Errorf("pending key %s: must be at least 16 characters", path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pending key: %w", err)
	}
	k := make([]byte, 32)
	rand.Read(k)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pending key: %w", err)
	}
	hexKey := hex.EncodeToString(k)
	if err := os.WriteFile(path, []byte(hexKey+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("pending key: %w", err)
	}
	return []byte(hexKey), nil
}
