package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"
)

// LoadSealKeys reads the clinic's curve key pairs from path, newest first,
// one seed a line, making the first on first use (mode 0600). The seeds never
// leave the clinic: the agent publishes only the current public key, and the
// relay seals requests to it. Former keys open what was sealed before a
// rotation.
func LoadSealKeys(path string) (current nkeys.KeyPair, former []nkeys.KeyPair, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := RotateSealKey(path); err != nil {
			return nil, nil, err
		}
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("seal key: %w", err)
	}
	var keys []nkeys.KeyPair
	for _, line := range bytes.Fields(b) {
		kp, err := nkeys.FromCurveSeed(line)
		if err != nil {
			return nil, nil, fmt.Errorf("seal key %s: %w", path, err)
		}
		keys = append(keys, kp)
	}
	if len(keys) == 0 {
		return nil, nil, fmt.Errorf("seal key %s: no key in it", path)
	}
	return keys[0], keys[1:], nil
}

// RotateSealKey makes a new key pair the current one in path, keeping the
// former ones, and returns its public key. A running agent takes it up when
// it starts again.
func RotateSealKey(path string) (string, error) {
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		return "", fmt.Errorf("seal key: %w", err)
	}
	seed, _ := kp.Seed()
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("seal key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("seal key: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(append(seed, '\n'), old...), 0o600); err != nil {
		return "", fmt.Errorf("seal key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("seal key: %w", err)
	}
	return kp.PublicKey()
}
