package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/clinicrelay/clinicrelay/subjects"
)

// purgedFile lists the clinics purged, with when (unix seconds): with the
// APP account's revocations, it is what a restore must not undo.
const purgedFile = "purged.json"

// Ledger is what an auth dir says was taken away: the agent keys revoked,
// the keys issued to each clinic, and the clinics purged.
type Ledger struct {
	Revoked map[string]int64    // agent public key -> revoked at (unix)
	Agents  map[string][]string // clinic -> the public keys of its agents
	Purged  map[string]int64    // clinic -> purged at (unix)
}

// ReadLedger reads the ledger of the relay data dir dir without changing or
// creating anything in it.
func ReadLedger(dir string) (Ledger, error) {
	k := &Keys{dir: filepath.Join(dir, "auth")}
	l := Ledger{Revoked: map[string]int64{}, Agents: map[string][]string{}, Purged: map[string]int64{}}
	b, err := os.ReadFile(filepath.Join(k.dir, "app.jwt"))
	if err != nil {
		return l, fmt.Errorf("%s is not a relay's data dir: %w", dir, err)
	}
	ac, err := jwt.DecodeAccountClaims(string(b))
	if err != nil {
		return l, fmt.Errorf("decode app jwt: %w", err)
	}
	maps.Copy(l.Revoked, ac.Revocations)
	if err := k.readJSON(purgedFile, &l.Purged); err != nil {
		return l, err
	}
	entries, err := os.ReadDir(filepath.Join(k.dir, "agents"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return l, fmt.Errorf("read agents: %w", err)
	}
	for _, e := range entries {
		clinic, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || subjects.ValidClinicID(clinic) != nil {
			continue
		}
		var keys []string
		if err := k.readJSON(agentsFile(clinic), &keys); err != nil {
			return l, err
		}
		l.Agents[clinic] = keys
	}
	return l, nil
}

// RevokedClinics are the clinics whose every agent key is revoked.
func (l Ledger) RevokedClinics() []string {
	var out []string
	for clinic, keys := range l.Agents {
		if len(keys) > 0 && !slices.ContainsFunc(keys, func(k string) bool { _, ok := l.Revoked[k]; return !ok }) {
			out = append(out, clinic)
		}
	}
	slices.Sort(out)
	return out
}

// RecordPurge adds clinic to the clinics purged.
func (k *Keys) RecordPurge(clinic string) error {
	unlock, err := k.lock()
	if err != nil {
		return err
	}
	defer unlock()
	purged := map[string]int64{}
	if err := k.readJSON(purgedFile, &purged); err != nil {
		return err
	}
	purged[clinic] = time.Now().Unix()
	b, _ := json.Marshal(purged)
	return writeFile(filepath.Join(k.dir, purgedFile), b)
}

// Revoke adds the revocations in rev that the APP account does not have yet
// and returns its new JWT, which the server must be given, and how many it
// added.
func (k *Keys) Revoke(rev map[string]int64) (string, int, error) {
	return k.revise(func(have jwt.RevocationList) (int, error) {
		n := 0
		for pub, at := range rev {
			if cur, ok := have[pub]; !ok || cur < at {
				have[pub] = at
				n++
			}
		}
		return n, nil
	})
}

// Merge adds what l took away to these keys: its revocations, and its
// clinics' agent keys (issued after a backup, a later revocation must know
// them). It returns the APP account's new JWT and how many revocations it
// added.
func (k *Keys) Merge(l Ledger) (string, int, error) {
	unlock, err := k.lock()
	if err != nil {
		return "", 0, err
	}
	for clinic, keys := range l.Agents {
		var have []string
		if err := k.readJSON(agentsFile(clinic), &have); err != nil {
			unlock()
			return "", 0, err
		}
		all := slices.Compact(slices.Sorted(slices.Values(append(have, keys...))))
		if len(all) == len(have) {
			continue
		}
		if err := os.MkdirAll(filepath.Join(k.dir, "agents"), 0o700); err != nil {
			unlock()
			return "", 0, err
		}
		b, _ := json.Marshal(all)
		if err := writeFile(filepath.Join(k.dir, agentsFile(clinic)), b); err != nil {
			unlock()
			return "", 0, err
		}
	}
	unlock()
	return k.Revoke(l.Revoked)
}
