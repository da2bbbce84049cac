package console

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/clinicrelay/clinicrelay/internal/keybox"
)

// The console's store keeps patient data sealed with AES-256-GCM under a key
// the clinic's admin may keep off the clinic PC's disk (Config.Key, from a
// key file on removable or network storage, or an environment variable):
// with it, a copy of that disk shows no patient. Only requests hold patient
// data; their IDs, the slots, the providers and the audit record do not, and
// stay in clear.

// KeyEnv may hold the console store's key: 64 hex digits.
const KeyEnv = "CLINICRELAY_CONSOLE_KEY"

// ParseKey reads a store key: 64 hex digits (32 bytes), spaces around them
// ignored.
func ParseKey(s string) ([]byte, error) {
	k, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(k) != 32 {
		return nil, errors.New("a console store key is 64 hex digits")
	}
	return k, nil
}

// NewKey is a random store key, as ParseKey reads it.
func NewKey() string {
	k := make([]byte, 32)
	rand.Read(k)
	return hex.EncodeToString(k)
}

// vault seals and opens request records; a nil box keeps them in clear.
type vault struct {
	box *keybox.Box
	// sealed: the store is sealed, and a value in clear in it is refused
	// (someone wrote the file).
	sealed bool
}

// sealedMark starts a sealed value (JSON starts with '{'); the nonce and
// the ciphertext follow.
const sealedMark = 0x01

func newVault(key []byte) (*vault, error) {
	if key == nil {
		return &vault{}, nil
	}
	box, err := keybox.New(key)
	if err != nil {
		return nil, errors.New("the store key must be 32 bytes")
	}
	return &vault{box: box}, nil
}

// seal is plain sealed for the record id (its additional data: a value
// moved under another ID does not open).
func (v *vault) seal(id, plain []byte) []byte {
	if v.box == nil {
		return plain
	}
	return v.box.Seal([]byte{sealedMark}, string(id), plain)
}

// open is the plain value of the record id.
func (v *vault) open(id, val []byte) ([]byte, error) {
	if len(val) == 0 || val[0] != sealedMark {
		if v.sealed {
			return nil, errors.New("a value in clear in a sealed store")
		}
		return val, nil // in clear: a store not (yet) sealed
	}
	if v.box == nil {
		return nil, errKeyNeeded
	}
	return v.box.Open(string(id), val[1:])
}

var errKeyNeeded = errors.New("this console's store is sealed: give the agent its key (--key-file FILE or " + KeyEnv + ")")

var (
	bucketMeta   = []byte("meta")
	keyKeyCheck  = []byte("key-check") // a known value sealed with the key: the key is the right one
	keyCheck     = []byte("clinicrelay console store key")
	keyCompacted = []byte("compacted") // the file was rewritten since it was sealed
)

// openStore opens the bbolt file at path for v: it checks that v's key is
// the store's, and seals a store kept in clear until now, then compacts it
// so that no page of the file holds the records in clear any more.
func openStore(path string, v *vault) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	compacted := true
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		check := meta.Get(keyKeyCheck)
		switch {
		case check != nil && v.box == nil:
			return errKeyNeeded
		case check != nil:
			if len(check) == 0 || check[0] != sealedMark {
				return errors.New("this console's store has a key check in clear: it was written by something else")
			}
			if got, err := v.open(keyKeyCheck, check); err != nil || !bytes.Equal(got, keyCheck) {
				return errors.New("this is not the key of this console's store")
			}
			v.sealed = true
			compacted = meta.Get(keyCompacted) != nil
			return nil
		case v.box == nil:
			return nil
		}
		if err := sealAll(tx, v); err != nil {
			return err
		}
		v.sealed, compacted = true, false
		return meta.Put(keyKeyCheck, v.seal(keyKeyCheck, keyCheck))
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	if compacted {
		return db, nil
	}
	// Sealed, not yet rewritten (now, or a compaction that failed at an
	// earlier start): rewrite it, then mark it.
	if db, err = compact(db, path); err != nil {
		return nil, err
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyCompacted, []byte{1}) }); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// sealAll seals every record in clear.
func sealAll(tx *bolt.Tx, v *vault) error {
	b, err := tx.CreateBucketIfNotExists(bucketRequests)
	if err != nil {
		return err
	}
	type kv struct{ k, v []byte }
	var plain []kv
	err = b.ForEach(func(k, val []byte) error {
		if len(val) > 0 && val[0] != sealedMark {
			plain = append(plain, kv{bytes.Clone(k), bytes.Clone(val)})
		}
		return nil
	})
	for _, p := range plain {
		if err == nil {
			err = b.Put(p.k, v.seal(p.k, p.v))
		}
	}
	return err
}

// compact rewrites db's file page by page into a new one, which replaces it:
// the freed pages that still held records in clear are gone.
func compact(db *bolt.DB, path string) (*bolt.DB, error) {
	tmp := path + ".sealing"
	os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second})
	if err == nil {
		err = bolt.Compact(dst, db, 1<<20)
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
	}
	db.Close()
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("compact the sealed store: %w", err)
	}
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
}
