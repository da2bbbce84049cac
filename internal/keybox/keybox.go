// Package keybox seals values with AES-256-GCM under one 32-byte key, each
// bound to the name it is kept under (its additional data), so that a
// value moved under another name does not open. A random 96-bit nonce
// heads each sealed value. The relay's contacts and portal records and the
// console's store are sealed with it.
package keybox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
)

// Box seals and opens values under one key.
type Box struct{ aead cipher.AEAD }

// ErrOpen is a value that does not open: another key, another name, or
// tampered with.
var ErrOpen = errors.New("does not open with this key")

// New is a Box for key, which must be 32 bytes.
func New(key []byte) (*Box, error) {
	if len(key) != 32 {
		return nil, errors.New("a sealing key is 32 bytes")
	}
	block, _ := aes.NewCipher(key) // 32 bytes: never fails
	aead, _ := cipher.NewGCM(block)
	return &Box{aead: aead}, nil
}

// Seal is plain sealed for name, after prefix (which is not sealed).
func (b *Box) Seal(prefix []byte, name string, plain []byte) []byte {
	n := b.aead.NonceSize()
	out := make([]byte, len(prefix)+n, len(prefix)+n+len(plain)+b.aead.Overhead())
	copy(out, prefix)
	rand.Read(out[len(prefix):])
	return b.aead.Seal(out, out[len(prefix):], plain, []byte(name))
}

// Open is the plain value of sealed for name.
func (b *Box) Open(name string, sealed []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < n {
		return nil, ErrOpen
	}
	plain, err := b.aead.Open(nil, sealed[:n], sealed[n:], []byte(name))
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}
