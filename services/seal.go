package services

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/nacl/box"
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

// SealRequest seals req to the clinic's public curve key to with a one-time
// sender key (a Booker keeps one per clinic a while: Sealer).
func SealRequest(req Request, to string) (Sealed, error) { return new(Sealer).Seal(req, to) }

// Opener opens requests sealed to a clinic's key, or to one of its former
// keys: requests sealed before a rotation still open until they are drained.
type Opener struct {
	keys map[string]nkeys.KeyPair // public key -> pair
	pub  string                   // the current key's

	mu sync.Mutex
	// shared is the box key of each (clinic key, sender key) seen lately:
	// a relay seals with one sender key per clinic for minutes (Sealer), so
	// most boxes open without a curve multiplication.
	shared map[[2]string]*[32]byte
}

// maxShared bounds Opener.shared; it starts again empty when full.
const maxShared = 256

// NewOpener is an Opener for the clinic's current curve key pair and its
// former ones.
func NewOpener(current nkeys.KeyPair, former ...nkeys.KeyPair) (*Opener, error) {
	o := &Opener{keys: map[string]nkeys.KeyPair{}}
	for i, kp := range append([]nkeys.KeyPair{current}, former...) {
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("seal key: %w", err)
		}
		if i == 0 {
			o.pub = pub
		}
		o.keys[pub] = kp
	}
	return o, nil
}

// Has says whether the Opener holds the key pub.
func (o *Opener) Has(pub string) bool { _, ok := o.keys[pub]; return ok }

// PublicKey is the key requests are sealed to.
func (o *Opener) PublicKey() string { return o.pub }

// Open opens s. A box that was tampered with, or sealed to another key, does
// not open.
func (o *Opener) Open(s Sealed) (Request, error) {
	var req Request
	return req, o.open(s, &req)
}

// OpenChange opens a sealed change (a cancellation or a new time).
func (o *Opener) OpenChange(s Sealed) (Change, error) {
	var ch Change
	return ch, o.open(s, &ch)
}

func (o *Opener) open(s Sealed, v any) error {
	kp, ok := o.keys[s.To]
	if !ok {
		return fmt.Errorf("open: sealed to %s, not to a key of this clinic's", s.To)
	}
	// nkeys' Open panics on a sender key longer than a curve key (it
	// decodes into a fixed array); the header is not trusted, so check it.
	// Base32 decoding skips line breaks, so the key must also be written
	// canonically: one key, one spelling.
	if !canonicalKey(s.From) || !nkeys.IsValidPublicCurveKey(s.From) {
		return fmt.Errorf("open: the sender key is not a public curve key")
	}
	shared, err := o.sharedKey(kp, s.To, s.From)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	if len(s.Box) <= len(xkeyVersion)+24 || string(s.Box[:len(xkeyVersion)]) != xkeyVersion {
		return fmt.Errorf("open: not a sealed box")
	}
	var nonce [24]byte
	copy(nonce[:], s.Box[len(xkeyVersion):])
	body, ok := box.OpenAfterPrecomputation(nil, s.Box[len(xkeyVersion)+24:], &nonce, shared)
	if !ok {
		return fmt.Errorf("open: %w", nkeys.ErrCouldNotDecrypt)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("open: %w", err)
	}
	return nil
}

// sharedKey is the box key between the clinic's key kp (public to) and the
// sender key from.
func (o *Opener) sharedKey(kp nkeys.KeyPair, to, from string) (*[32]byte, error) {
	id := [2]string{to, from}
	o.mu.Lock()
	k := o.shared[id]
	o.mu.Unlock()
	if k != nil {
		return k, nil
	}
	priv, err := kp.PrivateKey()
	if err != nil {
		return nil, err
	}
	rawPriv, err := nkeys.Decode(nkeys.PrefixBytePrivate, priv)
	if err != nil || len(rawPriv) != 32 {
		return nil, fmt.Errorf("the clinic's key is not a curve key")
	}
	rawPub, err := nkeys.Decode(nkeys.PrefixByteCurve, []byte(from))
	if err != nil || len(rawPub) != 32 {
		return nil, nkeys.ErrInvalidSender
	}
	var mine, peer [32]byte
	copy(mine[:], rawPriv)
	copy(peer[:], rawPub)
	k = new([32]byte)
	box.Precompute(k, &peer, &mine)
	clear(mine[:])
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.shared == nil || len(o.shared) >= maxShared {
		o.shared = map[[2]string]*[32]byte{}
	}
	o.shared[id] = k
	return k, nil
}

// Fingerprint is a short, readable digest of a public seal key, for people to
// compare: the console shows it, `relay clinic show` prints what the relay
// seals to, and the two must match.
func Fingerprint(pub string) string {
	sum := sha256.Sum256([]byte(pub))
	h := hex.EncodeToString(sum[:8])
	return h[0:4] + " " + h[4:8] + " " + h[8:12] + " " + h[12:16]
}

// canonicalKey reports whether k is spelled as nkeys writes a public key:
// upper-case base32 letters and digits only.
func canonicalKey(k string) bool {
	for _, r := range k {
		if (r < 'A' || r > 'Z') && (r < '2' || r > '7') {
			return false
		}
	}
	return k != ""
}
