package app

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/node"
)

// backupMagic starts every backup file.
const backupMagic = "CLINICRELAY-BACKUP-1\n"

// backupKey derives the archive's AES-256 key from the operator's seed: a
// backup opens only with the operator key of the relay that wrote it.
func backupKey(operatorSeed []byte) []byte {
	sum := sha256.Sum256(append([]byte("clinicrelay backup v1\x00"), bytes.TrimSpace(operatorSeed)...))
	return sum[:]
}

func backupAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func sealBackup(key, plain []byte) ([]byte, error) {
	gcm, err := backupAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	rand.Read(nonce)
	return append(append([]byte(backupMagic), nonce...), gcm.Seal(nil, nonce, plain, []byte(backupMagic))...), nil
}

func openBackup(key, sealed []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(sealed, []byte(backupMagic))
	if !ok {
		return nil, errors.New("not a clinicrelay backup")
	}
	gcm, err := backupAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(rest) < gcm.NonceSize() {
		return nil, errors.New("backup is truncated")
	}
	plain, err := gcm.Open(nil, rest[:gcm.NonceSize()], rest[gcm.NonceSize():], []byte(backupMagic))
	if err != nil {
		return nil, errors.New("backup does not open with this operator key, or was altered")
	}
	return plain, nil
}

// Backup writes an encrypted archive of the relay on dir to out: its keys
// (DATA/auth) and every message of REQUESTS and the buckets. Unlike `nats
// stream backup`, which writes plaintext even from an encrypted store, the
// archive is encrypted with a key derived from the operator's seed.
func Backup(ctx context.Context, dir, out string) (int, error) {
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
	err = withAdmin(ctx, dir, func(ctx context.Context, a *adminSession) error {
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
	sealed, err := sealBackup(backupKey(seed), plain.Bytes())
	if err != nil {
		return 0, err
	}
	return n, os.WriteFile(out, sealed, 0o600)
}

// Restore fills the new data dir dir from the backup file in, which opens
// with the operator's seed in operatorKey; key encrypts the new store ("":
// not). It returns how many messages it put back.
func Restore(ctx context.Context, in, operatorKey, dir, key string) (int, error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return 0, fmt.Errorf("restore into an empty data dir: %s has files", dir)
	}
	seed, err := os.ReadFile(operatorKey)
	if err != nil {
		return 0, fmt.Errorf("operator key: %w", err)
	}
	sealed, err := os.ReadFile(in)
	if err != nil {
		return 0, err
	}
	plain, err := openBackup(backupKey(seed), sealed)
	if err != nil {
		return 0, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(plain))
	if err != nil {
		return 0, err
	}
	lines, err := io.ReadAll(zr)
	if err != nil {
		return 0, err
	}
	// The keys first, so that the node starts with the same operator and
	// accounts and the clinics' creds stay valid.
	noop := func(string, []byte) error { return nil }
	write := func(path string, b []byte) error {
		p := filepath.Join(dir, filepath.Clean("/"+path))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o600)
	}
	if _, err := cjs.ReadBackup(ctx, nil, bytes.NewReader(lines), write); err != nil {
		return 0, err
	}
	n, err := node.Start(node.Config{DataDir: dir, EncryptionKey: key})
	if err != nil {
		return 0, err
	}
	defer n.Shutdown()
	creds, err := n.Keys.UserCreds("relay-restore", nil, false)
	if err != nil {
		return 0, err
	}
	nc, err := n.Connect(creds)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	return cjs.ReadBackup(ctx, js, bytes.NewReader(lines), noop)
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
