package integration

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/clinicrelay/clinicrelay/agent"
	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/jetstream/auth"
	"github.com/clinicrelay/clinicrelay/relay"
	"github.com/clinicrelay/clinicrelay/services"
)

// TestTLS: with certificates, agents reach NATS over TLS only and patients
// the web front over HTTPS only; an agent that does not trust the relay's CA
// cannot connect, and a client that does not speak TLS is refused.
func TestTLS(t *testing.T) {
	caFile, certFile, keyFile := writeTestPKI(t, t.TempDir())
	r := startRelay(t, relay.Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:0", AckWait: time.Second,
		TLSCert: certFile, TLSKey: keyFile, HTTPSCert: certFile, HTTPSKey: keyFile})
	if !strings.HasPrefix(r.NATSURL(), "tls://") || !strings.HasPrefix(r.HTTPURL(), "https://") {
		t.Fatalf("URLs %s %s, want tls:// and https://", r.NATSURL(), r.HTTPURL())
	}
	admin, err := r.Admin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := admin.Add(t.Context(), services.Clinic{ID: "oak", Name: "Oak", TimeZone: "America/Toronto"})
	if err != nil {
		t.Fatal(err)
	}

	// An agent that trusts the CA connects and publishes its slots, which
	// a patient reads over HTTPS.
	con := openDemoConsole(t, console.Config{})
	ag, err := agent.New(agent.Config{NATSURL: r.NATSURL(), Creds: creds, CAFile: caFile, RequireTLS: true, SealKey: agentSealKey(t, creds),
		Logger: testLogger(t), SyncEvery: 200 * time.Millisecond}, con)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ag.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(ca)
	jar, _ := cookiejar.New(nil)
	web := &Client{t: t, base: r.HTTPURL(), c: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	firstSlot(t, web, "oak")

	// Without the CA, the relay's certificate is not trusted.
	co, _ := auth.CredsOption(creds)
	if nc, err := nats.Connect(r.NATSURL(), co, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("an agent that does not trust the relay's CA connected")
	}
	// A client that does not speak TLS is refused.
	addr := strings.TrimPrefix(r.NATSURL(), "tls://")
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	info, _ := br.ReadString('\n')
	if !strings.Contains(info, `"tls_required":true`) {
		t.Fatalf("INFO %q does not require TLS", info)
	}
	c.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n"))
	if line, _ := br.ReadString('\n'); strings.HasPrefix(line, "PONG") {
		t.Fatal("a plain connection was served")
	}
	// Plain HTTP to the web front is refused too.
	if resp, err := http.Get("http://" + strings.TrimPrefix(r.HTTPURL(), "https://") + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP was served")
		}
	}
}

// writeTestPKI writes a throwaway CA and a certificate for 127.0.0.1 signed
// by it, and returns the CA, certificate and key files.
// writeTestPKI writes a CA and a certificate it signed for names (default:
// 127.0.0.1 and localhost), with its key.
func writeTestPKI(t *testing.T, dir string, names ...string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clinicrelay test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "relay"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if len(names) > 0 {
		tmpl.IPAddresses, tmpl.DNSNames = nil, names
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(name, kind string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// TestCommands_TLS: the relay's commands reach a running relay whose NATS
// certificate names its public host only, not the 127.0.0.1 it listens on:
// they trust the certificate it serves and expect its name. A wrong --ca or
// --server-name is named as such.
func TestCommands_TLS(t *testing.T) {
	_, certFile, keyFile := writeTestPKI(t, t.TempDir(), "relay.example.org")
	dir := t.TempDir()
	startRelay(t, relay.Config{DataDir: dir, NATSListen: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile})
	if code, out, stderr := relayCmd(t, "clinic", "add", "--slug", "oak", "--name", "Oak", "--timezone", "America/Toronto",
		"--out", t.TempDir(), "--data", dir); code != 0 {
		t.Fatalf("clinic add against a TLS relay: %d %s %s", code, out, stderr)
	}
	if code, out, stderr := relayCmd(t, "clinic", "list", "--data", dir); code != 0 || !strings.Contains(out, "oak") {
		t.Fatalf("clinic list against a TLS relay: %d %s %s", code, out, stderr)
	}
	if code, _, stderr := relayCmd(t, "clinic", "list", "--data", dir, "--server-name", "other.example.org"); code == 0 ||
		!strings.Contains(stderr, "is not for the name dialled (other.example.org): pass --server-name NAME") {
		t.Errorf("a wrong --server-name: %d %s", code, stderr)
	}
	otherCA, _, _ := writeTestPKI(t, t.TempDir())
	if code, _, stderr := relayCmd(t, "clinic", "list", "--data", dir, "--ca", otherCA); code == 0 ||
		!strings.Contains(stderr, "not signed by a CA trusted here: pass --ca") {
		t.Errorf("a wrong --ca: %d %s", code, stderr)
	}
}

// TestAgent_NamesTLSFailures: an agent that cannot reach the relay says why
// in words (it logged only "context deadline exceeded"): a CA it does not
// trust, a certificate for another name, TLS on one side only.
func TestAgent_NamesTLSFailures(t *testing.T) {
	// One relay with a certificate for 127.0.0.1, from a CA the agent is
	// not given; one whose certificate names only its public host.
	_, certA, keyA := writeTestPKI(t, t.TempDir())
	caB, certB, keyB := writeTestPKI(t, t.TempDir(), "relay.example.org")
	dirA := t.TempDir()
	relayA := startRelay(t, relay.Config{DataDir: dirA, NATSListen: "127.0.0.1:0", TLSCert: certA, TLSKey: keyA})
	// The TLS failures come before any check of the creds: one clinic's do.
	admin, err := relayA.Admin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := admin.Add(t.Context(), services.Clinic{ID: "oak", Name: "Oak", TimeZone: "America/Toronto"})
	if err != nil {
		t.Fatal(err)
	}
	tlsURL := relayA.NATSURL()
	relayB := startRelay(t, relay.Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:0", TLSCert: certB, TLSKey: keyB})
	plain := NewEnv(t)
	for _, tc := range []struct {
		name, url, ca string
		requireTLS    bool
		want          string
	}{
		{"unknown CA", tlsURL, "", false, "not signed by a CA trusted here"},
		{"other name", relayB.NATSURL(), caB, false, "not for the name dialled (127.0.0.1)"},
		{"TLS to plain", plain.Relay.NATSURL(), "", true, "does not speak TLS but TLS is required here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ag, err := agent.New(agent.Config{NATSURL: tc.url, Creds: creds, CAFile: tc.ca, RequireTLS: tc.requireTLS,
				SealKey: agentSealKey(t, creds), Logger: testLogger(t)}, openDemoConsole(t, console.Config{}))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { ag.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			poll.For(t, 10*time.Second, func() error {
				if !strings.Contains(logged(t), tc.want) {
					return fmt.Errorf("the agent's log does not say %q", tc.want)
				}
				return nil
			})
			if n := strings.Count(logged(t), "cannot connect to the relay"); n != 1 {
				t.Errorf("logged %d times, want once however often it tries", n)
			}
		})
	}
}
