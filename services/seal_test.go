package services_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/clinicrelay/clinicrelay/services"
)

func TestSealRequest(t *testing.T) {
	clinic, _ := nkeys.CreateCurveKeys()
	pub, _ := clinic.PublicKey()
	other, _ := nkeys.CreateCurveKeys()
	req := services.Request{ID: "0123456789abcdef0123456789abcdef", ClinicID: "maple", SlotID: "dr-lee_20300101T1400Z",
		Name: "Ada Patient", Reason: "sore knee", Consent: true}
	s, err := services.SealRequest(req, pub)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(s.Box, []byte("Ada Patient")) || bytes.Contains(s.Box, []byte("sore knee")) {
		t.Fatal("the sealed box shows the patient's data")
	}
	o, _ := services.NewOpener(clinic)
	if o.PublicKey() != pub {
		t.Fatalf("opener key %s, want %s", o.PublicKey(), pub)
	}
	wrong, _ := services.NewOpener(other)
	got, err := o.Open(s)
	if err != nil || got != req {
		t.Fatalf("open = %+v, %v; want %+v", got, err, req)
	}
	if _, err := wrong.Open(s); err == nil {
		t.Error("another key opened it")
	}
	tampered := s
	tampered.Box = bytes.Clone(s.Box)
	tampered.Box[len(tampered.Box)/2] ^= 1
	if _, err := o.Open(tampered); err == nil {
		t.Error("a tampered box opened")
	}
	if _, err := services.SealRequest(req, "not-a-key"); err == nil {
		t.Error("sealed to a malformed key")
	}
}

// TestSealer: one sender key per clinic for at most SenderKeyLife, a fresh
// nonce per box, and boxes that nkeys' own xkeys open (and the other way
// round), so agents and relays of either kind read each other.
func TestSealer(t *testing.T) {
	clinic, _ := nkeys.CreateCurveKeys()
	pub, _ := clinic.PublicKey()
	other, _ := nkeys.CreateCurveKeys()
	otherPub, _ := other.PublicKey()
	now := time.Date(2026, 3, 2, 15, 0, 0, 0, time.UTC)
	s := &services.Sealer{Now: func() time.Time { return now }}
	req := services.Request{ID: "0123456789abcdef0123456789abcdef", ClinicID: "maple", Name: "Ada Patient"}
	a, _ := s.Seal(req, pub)
	b, _ := s.Seal(req, pub)
	c, _ := s.Seal(req, otherPub)
	if a.From != b.From || a.From == c.From {
		t.Errorf("sender keys %s %s %s: want one per clinic", a.From, b.From, c.From)
	}
	if bytes.Equal(a.Box, b.Box) {
		t.Error("two boxes of the same request are equal: the nonce was reused")
	}
	now = now.Add(services.SenderKeyLife)
	if d, _ := s.Seal(req, pub); d.From == a.From {
		t.Errorf("sender key kept past %s", services.SenderKeyLife)
	}
	if body, err := clinic.Open(a.Box, a.From); err != nil || !bytes.Contains(body, []byte("Ada Patient")) {
		t.Errorf("nkeys cannot open the Sealer's box: %v", err)
	}
	sender, _ := nkeys.CreateCurveKeys()
	senderPub, _ := sender.PublicKey()
	box, _ := sender.Seal([]byte(`{"id":"0123456789abcdef0123456789abcdef","clinic_id":"maple"}`), pub)
	o, _ := services.NewOpener(clinic)
	for range 2 { // the second from the opener's kept key
		if got, err := o.Open(services.Sealed{To: pub, From: senderPub, Box: box}); err != nil || got.ClinicID != "maple" {
			t.Errorf("an nkeys box: %+v, %v", got, err)
		}
	}
	if _, err := o.Open(services.Sealed{To: pub, From: a.From, Box: box}); err == nil {
		t.Error("a box opened under another sender's key")
	}
}
