package services_test

import (
	"bytes"
	"testing"

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
