package app

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/auth"
	"github.com/clinicrelay/clinicrelay/jetstream/clinics"
	"github.com/clinicrelay/clinicrelay/jetstream/node"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// Backup writes an encrypted archive of the relay on dir to out: its keys
// (DATA/auth) and every message of REQUESTS and the buckets. Unlike `nats
// stream backup`, which writes plaintext even from an encrypted store, the
// archive is encrypted with a key derived from the operator's seed.
func Backup(ctx context.Context, t target, out string) (int, error) {
	dir := t.dir
	files := map[string][]byte{}
	authDir := filepath.Join(dir, "auth")
	err := filepath.WalkDir(authDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(path) == "auth.lock" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel] = b
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("backup keys: %w", err)
	}
	seed, ok := files[filepath.Join("auth", "operator.nk")]
	if !ok {
		return 0, fmt.Errorf("%s has no operator key", authDir)
	}
	var plain bytes.Buffer
	zw := gzip.NewWriter(&plain)
	var n int
	err = withAdmin(ctx, t, func(ctx context.Context, a *adminSession) error {
		cw := &countWriter{w: zw}
		err := cjs.WriteBackup(ctx, a.JS, files, cw)
		n = cw.lines
		return err
	})
	if err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	sealed, err := cjs.SealBackup(cjs.BackupKey(seed), plain.Bytes())
	if err != nil {
		return 0, err
	}
	return n, os.WriteFile(out, sealed, 0o600)
}

// RestoreOptions say what to restore, where, and what to carry over.
type RestoreOptions struct {
	In          string // the backup file
	OperatorKey string // the operator's seed it opens with
	Dir         string // the new, empty data dir
	Key         string // encrypts the new store ("": not)
	// Previous is the data dir of the relay the backup replaces: what it
	// revoked or purged since the backup stays revoked or purged.
	Previous string
	// AsBackedUp restores with no previous data dir: what was revoked or
	// purged since the backup comes back, and the report lists every
	// clinic active again.
	AsBackedUp bool
}

// RestoreReport is what a restore did.
type RestoreReport struct {
	Messages int
	// Revocations and Revoked: the agent keys and the clinics revoked on
	// the previous relay since the backup, revoked again.
	Revocations int
	Revoked     []string
	// Purged: the clinics purged since the backup, purged again.
	Purged []string
	// SealKeys is how many clinics' seal keys were dropped: each agent
	// publishes its current one when it reconnects.
	SealKeys int
	// Active lists the clinics active in the backup (AsBackedUp only).
	Active []string
}

// errNoPrevious is a restore with neither a previous data dir nor consent.
var errNoPrevious = errors.New("a backup brings back every clinic revoked or purged after it was made: " +
	"pass --previous-data DIR, the data dir of the relay it replaces, to keep them revoked and purged; " +
	"or --as-backed-up when there is none, then revoke or purge them again")

// Restore fills the new data dir o.Dir from the backup: the keys, then every
// stream. The clinics' seal keys are dropped (a backup's may be old: its
// agents publish their current ones when they reconnect), and what the
// previous relay revoked or purged since the backup is revoked or purged
// again.
func Restore(ctx context.Context, o RestoreOptions) (RestoreReport, error) {
	var rep RestoreReport
	if o.Previous == "" && !o.AsBackedUp {
		return rep, errNoPrevious
	}
	var prev auth.Ledger
	if o.Previous != "" {
		var err error
		if prev, err = auth.ReadLedger(o.Previous); err != nil {
			return rep, fmt.Errorf("previous data: %w", err)
		}
	}
	if entries, err := os.ReadDir(o.Dir); err == nil && len(entries) > 0 {
		return rep, fmt.Errorf("restore into an empty data dir: %s has files", o.Dir)
	}
	seed, err := os.ReadFile(o.OperatorKey)
	if err != nil {
		return rep, fmt.Errorf("operator key: %w", err)
	}
	sealed, err := os.ReadFile(o.In)
	if err != nil {
		return rep, err
	}
	plain, err := cjs.OpenBackup(cjs.BackupKey(seed), sealed)
	if err != nil {
		return rep, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(plain))
	if err != nil {
		return rep, err
	}
	lines, err := io.ReadAll(zr)
	if err != nil {
		return rep, err
	}
	// The keys first, so that the node starts with the same operator and
	// accounts and the clinics' creds stay valid.
	noop := func(string, []byte) error { return nil }
	write := func(path string, b []byte) error {
		p := filepath.Join(o.Dir, filepath.Clean("/"+path))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o600)
	}
	if _, err := cjs.ReadBackup(ctx, nil, bytes.NewReader(lines), write); err != nil {
		return rep, err
	}
	backedUp, err := auth.ReadLedger(o.Dir)
	if err != nil {
		return rep, err
	}
	n, err := node.Start(node.Config{DataDir: o.Dir, EncryptionKey: o.Key})
	if err != nil {
		return rep, err
	}
	defer n.Shutdown()
	connect := func(name string, sys bool) (*nats.Conn, error) {
		creds, err := n.Keys.UserCreds(name, nil, sys)
		if err != nil {
			return nil, err
		}
		return n.Connect(creds)
	}
	nc, err := connect("relay-restore", false)
	if err != nil {
		return rep, err
	}
	defer nc.Close()
	sys, err := connect("relay-restore-sys", true)
	if err != nil {
		return rep, err
	}
	defer sys.Close()
	js, _ := jetstream.New(nc)
	if rep.Messages, err = cjs.ReadBackup(ctx, js, bytes.NewReader(lines), noop); err != nil {
		return rep, err
	}
	// What the backup does not hold (PENDING, CONTACTS, NOTIFY...) is made
	// as the relay would at its start, so a purge finds every bucket.
	if err := cjs.Provision(ctx, js, cjs.Options{}); err != nil {
		return rep, err
	}
	if rep.SealKeys, err = dropSealKeys(ctx, js); err != nil {
		return rep, err
	}
	admin := &clinics.Admin{JS: js, Sys: sys, Keys: n.Keys}
	if o.Previous == "" {
		list, err := admin.List(ctx)
		for _, c := range list {
			if !c.Revoked {
				rep.Active = append(rep.Active, c.ID)
			}
		}
		return rep, err
	}
	return rep, carryOver(ctx, admin, prev, backedUp, &rep)
}

// carryOver revokes and purges again on the restored relay what the previous
// one revoked or purged after the backup.
func carryOver(ctx context.Context, admin *clinics.Admin, prev, backedUp auth.Ledger, rep *RestoreReport) error {
	token, added, err := admin.Keys.Merge(prev)
	if err != nil {
		return err
	}
	if rep.Revocations = added; added > 0 {
		if err := clinics.PushAccount(ctx, admin.Sys, token); err != nil {
			return err
		}
	}
	for _, id := range slices.Sorted(maps.Keys(prev.Purged)) {
		if prev.Purged[id] <= backedUp.Purged[id] {
			continue // purged before the backup: the backup has it so
		}
		if _, err := admin.Purge(ctx, id); err != nil && services.ErrorCode(err) == services.ENotFound {
			continue
		} else if err != nil {
			return fmt.Errorf("purge %s again: %w", id, err)
		}
		rep.Purged = append(rep.Purged, id)
	}
	for _, id := range prev.RevokedClinics() {
		c, _, err := admin.Show(ctx, id)
		if err != nil && services.ErrorCode(err) == services.ENotFound || err == nil && c.Revoked {
			continue
		} else if err != nil {
			return err
		}
		if _, err := admin.Revoke(ctx, id); err != nil {
			return fmt.Errorf("revoke %s again: %w", id, err)
		}
		rep.Revoked = append(rep.Revoked, id)
	}
	return nil
}

// dropSealKeys removes every clinic's seal key from CLINICS; the web takes
// no request for a clinic until its agent has published its key again.
func dropSealKeys(ctx context.Context, js jetstream.JetStream) (int, error) {
	s, err := js.Stream(ctx, subjects.KVStream(subjects.BucketClinics))
	if err != nil {
		return 0, err
	}
	filter := subjects.KVSubject(subjects.BucketClinics, "*."+subjects.KeySealKey)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, err
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(filter)); err != nil {
		return 0, fmt.Errorf("drop seal keys: %w", err)
	}
	return len(info.State.Subjects), nil
}

// countWriter counts the JSON lines written through it.
type countWriter struct {
	w     io.Writer
	lines int
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.lines += bytes.Count(p, []byte("\n"))
	return c.w.Write(p)
}
