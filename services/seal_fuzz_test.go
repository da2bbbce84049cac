package services_test

import (
	"bytes"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/clinicrelay/clinicrelay/services"
)

// fuzzSenderSeed is a fixed sender key, for a deterministic genuine box.
var fuzzSenderSeed = []byte("SXAGAAZL7WIDHHIZHNOGTLCON5IWJAYZDWF4YUH3GAWVW6ZGHVS32GTMNA")

// fuzzSealSeed is a fixed clinic key, so the seed corpus stays meaningful.
var fuzzSealSeed = []byte("SXAEKHZA3T2A5EAIVLSHD6NDMAPA6CLO3WR56FMF4QAHXWCQTSV3HTFPZA")

// FuzzOpen: the sealed-envelope opener never panics; a box that opens is
// exactly one sealed to this clinic (here: the genuine one); any change to
// the box, the sender or the recipient makes it fail.
func FuzzOpen(f *testing.F) {
	kp, err := nkeys.FromCurveSeed(fuzzSealSeed)
	if err != nil {
		f.Fatal(err)
	}
	o, _ := services.NewOpener(kp)
	// The genuine box is built deterministically (a fixed sender key and
	// nonce), so every fuzzing process agrees on which box is genuine.
	sender, _ := nkeys.FromCurveSeed(fuzzSenderSeed)
	from, _ := sender.PublicKey()
	body := []byte(`{"id":"0123456789abcdef0123456789abcdef","clinic_id":"maple","slot_id":"dr-lee_20300101T1400Z","name":"Ada Patient"}`)
	box, err := sender.SealWithRand(body, o.PublicKey(), bytes.NewReader(make([]byte, 64)))
	if err != nil {
		f.Fatal(err)
	}
	genuine := services.Sealed{To: o.PublicKey(), From: from, Box: box}
	f.Add(genuine.To, genuine.From, genuine.Box)
	f.Add(genuine.To, genuine.From, []byte{})
	f.Add(genuine.To, "", genuine.Box)
	f.Add("", genuine.From, genuine.Box)
	f.Add(genuine.To, genuine.To, genuine.Box[:len(genuine.Box)/2])
	f.Fuzz(func(t *testing.T, to, from string, box []byte) {
		req, err := o.Open(services.Sealed{To: to, From: from, Box: box})
		same := to == genuine.To && from == genuine.From && bytes.Equal(box, genuine.Box)
		if err == nil && !same {
			t.Fatalf("opened a box that is not the genuine one: %+v", req)
		}
		if same && (err != nil || req.Name != "Ada Patient") {
			t.Fatalf("the genuine box: %+v, %v", req, err)
		}
	})
}
