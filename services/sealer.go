package services

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/nacl/box"
)

// SenderKeyLife is the longest a Sealer keeps one sender key per clinic.
const SenderKeyLife = 5 * time.Minute

// xkeyVersion heads every box, as nkeys' xkeys write it ("xkv1"): a box
// sealed here opens with nkeys' Open, and the other way round.
const xkeyVersion = "xkv1"

// Sealer seals requests and changes to their clinic's public key. Sealing
// costs two curve multiplications when the sender key is new (making it,
// and the key it shares with the clinic), which was most of a booking's CPU;
// so the Sealer keeps one sender key per clinic for at most SenderKeyLife
// and seals each message with a fresh random nonce under the key they share.
// The sender key lives only in the relay's memory: someone who reads that
// memory reads the requests before they are sealed anyway, and past its
// life the key is thrown away, so boxes sealed with it stay closed to all
// but the clinic. The zero Sealer is ready to use.
type Sealer struct {
	Now func() time.Time

	mu      sync.Mutex
	senders map[string]*sender // by the clinic's public key
	swept   time.Time          // when senders past their life were last thrown away
}

// sender is a sender key and the box key it shares with one clinic.
type sender struct {
	pub    string
	shared [32]byte
	born   time.Time
}

// Seal seals v, as JSON, to the public curve key to.
func (s *Sealer) Seal(v any, to string) (Sealed, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return Sealed{}, fmt.Errorf("seal: %w", err)
	}
	snd, err := s.sender(to)
	if err != nil {
		return Sealed{}, err
	}
	var nonce [24]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return Sealed{}, fmt.Errorf("seal: %w", err)
	}
	out := append([]byte(xkeyVersion), nonce[:]...)
	return Sealed{To: to, From: snd.pub, Box: box.SealAfterPrecomputation(out, body, &nonce, &snd.shared)}, nil
}

// sender is the current sender key for to, made anew past SenderKeyLife.
func (s *Sealer) sender(to string) (*sender, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	t := now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if snd := s.senders[to]; snd != nil && t.Sub(snd.born) < SenderKeyLife && !t.Before(snd.born) {
		return snd, nil
	}
	if !nkeys.IsValidPublicCurveKey(to) {
		return nil, fmt.Errorf("seal: %q is not a public curve key", to)
	}
	raw, err := nkeys.Decode(nkeys.PrefixByteCurve, []byte(to))
	if err != nil || len(raw) != 32 {
		return nil, fmt.Errorf("seal: %q is not a public curve key", to)
	}
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	pub, err := nkeys.Encode(nkeys.PrefixByteCurve, priv.PublicKey().Bytes())
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	snd := &sender{pub: string(pub), born: t}
	var peer, mine [32]byte
	copy(peer[:], raw)
	copy(mine[:], priv.Bytes())
	box.Precompute(&snd.shared, &peer, &mine)
	clear(mine[:])
	if s.senders == nil {
		s.senders = map[string]*sender{}
	}
	if t.Sub(s.swept) >= SenderKeyLife {
		// Keys past their life go, those of quiet clinics and of rotated
		// keys too: at most once a life, so the sweep stays cheap.
		for k, o := range s.senders {
			if t.Sub(o.born) >= SenderKeyLife {
				delete(s.senders, k) // not cleared: a Seal may still be using it
			}
		}
		s.swept = t
	}
	s.senders[to] = snd
	return snd, nil
}
