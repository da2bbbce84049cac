package console_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/agent/console/staff"
	"github.com/clinicrelay/clinicrelay/internal/poll"
)

// selfSigned writes a certificate for 127.0.0.1 and its key; it returns
// their paths and a pool that trusts it.
func selfSigned(t *testing.T) (cert, key string, pool *x509.CertPool) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "front desk"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return cert, key, pool
}

// With a certificate the console serves HTTPS only, and its session cookie
// is Secure.
func TestConsole_TLS(t *testing.T) {
	cert, key, pool := selfSigned(t)
	c, err := console.Open(console.Config{Path: filepath.Join(t.TempDir(), "console.db"), TLSCert: cert, TLSKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := c.Staff().Put("ana", staff.RoleFrontDesk, nil, staffPassword); err != nil {
		t.Fatal(err)
	}
	base := "https://" + ln.Addr().String()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var res *http.Response
	poll.For(t, 5*time.Second, func() error {
		var err error
		res, err = hc.Post(base+"/api/session", "application/json",
			strings.NewReader(`{"name":"ana","password":"`+staffPassword+`"}`))
		return err
	})
	res.Body.Close()
	var secure bool
	for _, ck := range res.Cookies() {
		secure = secure || ck.Name == "console_session" && ck.Secure
	}
	if res.StatusCode != http.StatusOK || !secure {
		t.Fatalf("sign-in over HTTPS: %d, Secure cookie %v", res.StatusCode, secure)
	}
	if res, err := http.Get("http://" + ln.Addr().String() + "/signin"); err == nil && res.StatusCode == http.StatusOK {
		t.Fatal("the console answered plain HTTP")
	}
}
