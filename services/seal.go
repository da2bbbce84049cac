package services

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nkeys"
)

// Sealed is a request sealed to its clinic's public curve key: only the
// clinic's agent, which keeps the private half, can open it. The relay sees
// routing IDs only.
type Sealed struct {
	To   string // the clinic's public curve key ("X...")
	From string // a one-time sender key; its private half is thrown away
	Box  []byte
}

// Queued is what goes on a clinic's queue: routing IDs in the clear, the
// request sealed, and the revisions of its hold and status.
type Queued struct {
	RequestID, ClinicID, SlotID string
	Sealed                      Sealed
	Rev                         Revisions
}

// SealRequest seals req to the clinic's public curve key to.
func SealRequest(req Request, to string) (Sealed, error) {
	if !nkeys.IsValidPublicCurveKey(to) {
		return Sealed{}, fmt.Errorf("seal: %q is not a public curve key", to)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Sealed{}, fmt.Errorf("seal: %w", err)
	}
	once, err := nkeys.CreateCurveKeys()
	if err != nil {
		return Sealed{}, fmt.Errorf("seal: %w", err)
	}
	from, _ := once.PublicKey()
	box, err := once.Seal(body, to)
	if err != nil {
		return Sealed{}, fmt.Errorf("seal: %w", err)
	}
	return Sealed{To: to, From: from, Box: box}, nil
}

// OpenRequest opens s with the clinic's key pair. A box that was tampered
// with, or sealed to another key, does not open.
func OpenRequest(s Sealed, kp nkeys.KeyPair) (Request, error) {
	var req Request
	pub, err := kp.PublicKey()
	if err != nil {
		return req, fmt.Errorf("open: %w", err)
	}
	if s.To != pub {
		return req, fmt.Errorf("open: sealed to %s, not to this clinic's key %s", s.To, pub)
	}
	body, err := kp.Open(s.Box, s.From)
	if err != nil {
		return req, fmt.Errorf("open: %w", err)
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return req, fmt.Errorf("open: %w", err)
	}
	return req, nil
}
