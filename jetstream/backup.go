package jetstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/subjects"
)

// backupRecord is one line of a backup: a file of the data dir, a stream's
// config, or one message of a stream.
type backupRecord struct {
	Kind    string                  `json:"kind"` // file, stream, msg
	Path    string                  `json:"path,omitempty"`
	Stream  string                  `json:"stream,omitempty"`
	Config  *jetstream.StreamConfig `json:"config,omitempty"`
	Subject string                  `json:"subject,omitempty"`
	Header  nats.Header             `json:"header,omitempty"`
	Data    []byte                  `json:"data,omitempty"`
}

// BackupStreams are the streams a backup holds: the queue and the buckets.
func BackupStreams() []string {
	out := []string{subjects.StreamRequests, subjects.StreamAudit}
	for _, b := range []string{subjects.BucketClinics, subjects.BucketAvailability, subjects.BucketHolds, subjects.BucketStatus,
		subjects.BucketPortal} {
		out = append(out, subjects.KVStream(b))
	}
	return out
}

// WriteBackup writes files, then every stream's config and messages, as JSON
// lines to w. Its output is plaintext: the caller encrypts it.
func WriteBackup(ctx context.Context, js jetstream.JetStream, files map[string][]byte, w io.Writer) error {
	enc := json.NewEncoder(w)
	for path, b := range files {
		if err := enc.Encode(backupRecord{Kind: "file", Path: path, Data: b}); err != nil {
			return err
		}
	}
	for _, name := range BackupStreams() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("backup %s: %w", name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return fmt.Errorf("backup %s: %w", name, err)
		}
		cfg := info.Config
		if err := enc.Encode(backupRecord{Kind: "stream", Stream: name, Config: &cfg}); err != nil {
			return err
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("backup %s #%d: %w", name, seq, err)
			}
			if m.Header.Get("Nats-Marker-Reason") != "" {
				continue // the server's own marker of an expired key
			}
			if err := enc.Encode(backupRecord{Kind: "msg", Stream: name, Subject: m.Subject, Header: m.Header, Data: m.Data}); err != nil {
				return err
			}
		}
	}
	return nil
}

// ReadBackup reads what WriteBackup wrote: it hands each file to file, makes
// each stream and publishes its messages back in order. With js nil it hands
// over the files only.
func ReadBackup(ctx context.Context, js jetstream.JetStream, r io.Reader, file func(path string, b []byte) error) (msgs int, err error) {
	dec := json.NewDecoder(bufio.NewReader(r))
	for {
		var rec backupRecord
		if err := dec.Decode(&rec); errors.Is(err, io.EOF) {
			return msgs, nil
		} else if err != nil {
			return msgs, fmt.Errorf("restore: %w", err)
		}
		switch rec.Kind {
		case "file":
			if err := file(rec.Path, rec.Data); err != nil {
				return msgs, err
			}
		case "stream":
			if js == nil {
				continue
			}
			if _, err := js.CreateOrUpdateStream(ctx, *rec.Config); err != nil {
				return msgs, fmt.Errorf("restore %s: %w", rec.Stream, err)
			}
		case "msg":
			if js == nil {
				continue
			}
			m := nats.NewMsg(rec.Subject)
			m.Data = rec.Data
			for k, v := range rec.Header {
				// Of the server's headers only the dedupe ID and the TTL
				// go back: the rest describe the old stream (its
				// sequences, the revision a write expected, the stream's
				// name) and would be read as this one's.
				if !strings.HasPrefix(k, "Nats-") || k == nats.MsgIdHdr || k == "Nats-TTL" {
					m.Header[k] = v
				}
			}
			if _, err := js.PublishMsg(ctx, m); err != nil {
				return msgs, fmt.Errorf("restore %s %s: %w", rec.Stream, rec.Subject, err)
			}
			msgs++
		default:
			return msgs, fmt.Errorf("restore: unknown record %q", rec.Kind)
		}
	}
}

// backupMagic starts every backup file.
const backupMagic = "CLINICRELAY-BACKUP-1\n"

// BackupKey derives the archive's AES-256 key from the operator's seed: a
// backup opens only with the operator key of the relay that wrote it.
func BackupKey(operatorSeed []byte) []byte {
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

// SealBackup encrypts a backup's plaintext (WriteBackup's output) under key
// with AES-256-GCM, behind backupMagic.
func SealBackup(key, plain []byte) ([]byte, error) {
	gcm, err := backupAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	rand.Read(nonce)
	return append(append([]byte(backupMagic), nonce...), gcm.Seal(nil, nonce, plain, []byte(backupMagic))...), nil
}

// OpenBackup opens what SealBackup sealed; an error says why in words an
// operator can act on.
func OpenBackup(key, sealed []byte) ([]byte, error) {
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
