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

// LoadSealKey reads the clinic's curve key pair from path, making one on
// first use (mode 0600). Its seed never leaves the clinic: the agent
// publishes only the public half, and the relay seals requests to it.
func LoadSealKey(path string) (nkeys.KeyPair, error) {
	seed, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		kp, err := nkeys.CreateCurveKeys()
		if err != nil {
			return nil, fmt.Errorf("seal key: %w", err)
		}
		seed, _ = kp.Seed()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("seal key: %w", err)
		}
		if err := os.WriteFile(path, seed, 0o600); err != nil {
			return nil, fmt.Errorf("seal key: %w", err)
		}
		return kp, nil
	}
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	kp, err := nkeys.FromCurveSeed(bytes.TrimSpace(seed))
	if err != nil {
		return nil, fmt.Errorf("seal key %s: %w", path, err)
	}
	return kp, nil
}
