package app

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// keyEnv may hold the JetStream store's encryption key.
const keyEnv = "CLINICRELAY_ENCRYPTION_KEY"

// demoKeyFile is the key `relay demo` generates in its data dir.
const demoKeyFile = "jetstream.key"

// storeKey finds the encryption key of the JetStream store in dir: from file
// when given, else from $CLINICRELAY_ENCRYPTION_KEY, else from
// DATA/jetstream.key, which `relay demo` writes (generating it when gen is
// set). "" means the store is not encrypted.
func storeKey(dir, file string, gen bool) (string, error) {
	if file != "" {
		return readKey(file)
	}
	if k := strings.TrimSpace(os.Getenv(keyEnv)); k != "" {
		if len(k) < 16 {
			return "", fmt.Errorf("%s must be at least 16 characters", keyEnv)
		}
		return k, nil
	}
	path := filepath.Join(dir, demoKeyFile)
	k, err := readKey(path)
	if !errors.Is(err, fs.ErrNotExist) || !gen {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		return k, err
	}
	b := make([]byte, 32)
	rand.Read(b)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("data dir %s: %w", dir, err)
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("encryption key: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func readKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("encryption key: %w", err)
	}
	k := strings.TrimSpace(string(b))
	if len(k) < 16 {
		return "", fmt.Errorf("encryption key %s: must be at least 16 characters", path)
	}
	return k, nil
}
