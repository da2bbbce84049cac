package auth_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/clinicrelay/clinicrelay/jetstream/auth"
)

func TestOpen_KeepsKeys(t *testing.T) {
	dir := t.TempDir()
	k1, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k1.OperatorPublicKey() != k2.OperatorPublicKey() || k1.AppPublicKey() != k2.AppPublicKey() {
		t.Error("second Open made new keys")
	}
	if _, err := k1.AgentCreds("maple"); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(dir, func(path string, e os.DirEntry, _ error) error {
		if path == dir {
			return nil // the test's temp dir
		}
		info, _ := e.Info()
		want := os.FileMode(0o600)
		if e.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", path, info.Mode().Perm(), want)
		}
		return nil
	})
	if _, err := auth.Open(filepath.Join(dir, "operator.nk")); err == nil {
		t.Error("Open on a file worked")
	}
}

func TestKeys_AgentCredsAndRevoke(t *testing.T) {
	dir := t.TempDir()
	k, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.AgentCreds("bad.id"); err == nil {
		t.Fatal("creds minted for an invalid clinic id")
	}
	creds, err := k.AgentCreds("maple")
	if err != nil {
		t.Fatal(err)
	}
	token, _ := jwt.ParseDecoratedJWT(creds)
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	if uc.IssuerAccount != k.AppPublicKey() || !uc.Tags.Contains("clinic:maple") || uc.Issuer == k.AppPublicKey() {
		t.Errorf("agent user: issuer account %s, tags %v, issuer %s; want the scoped signer of APP", uc.IssuerAccount, uc.Tags, uc.Issuer)
	}
	if len(uc.Pub.Allow) != 0 || len(uc.Sub.Allow) != 0 {
		t.Error("a scoped user must carry no permissions of its own")
	}
	ac, _ := jwt.DecodeAccountClaims(k.AppJWT())
	scope, ok := ac.SigningKeys.GetScope(uc.Issuer)
	if !ok || scope == nil {
		t.Fatal("agent signer is not a scoped signing key of APP")
	}

	newJWT, n, err := k.RevokeClinic("maple")
	if err != nil || n != 1 {
		t.Fatalf("revoke: %d keys, %v", n, err)
	}
	ac, _ = jwt.DecodeAccountClaims(newJWT)
	if !ac.IsClaimRevoked(uc) {
		t.Error("the agent's JWT is not revoked by the new account JWT")
	}
	again, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ac, _ := jwt.DecodeAccountClaims(again.AppJWT()); !ac.IsClaimRevoked(uc) {
		t.Error("revocation lost on reopen")
	}
}

// TestOpen_SplitsAgentsJSON: a data dir from before the file per clinic keeps
// its issued agent keys, so revoking still cuts them off.
func TestOpen_SplitsAgentsJSON(t *testing.T) {
	dir := t.TempDir()
	if _, err := auth.Open(dir); err != nil {
		t.Fatal(err)
	}
	old := `{"maple":["UAKEY1","UAKEY2"],"birch":["UBKEY"]}`
	if err := os.WriteFile(filepath.Join(dir, "agents.json"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "agents.json")); !os.IsNotExist(err) {
		t.Errorf("agents.json still there: %v", err)
	}
	if _, n, err := k.RevokeClinic("maple"); err != nil || n != 2 {
		t.Errorf("revoke maple: %d keys, %v; want 2", n, err)
	}
}
