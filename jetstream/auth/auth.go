// Package auth keeps the relay's JWT operator-mode key material: an operator,
// a SYS account, the APP account that holds the streams, and a scoped signing
// key whose template grants a clinic agent exactly subjects.AgentPermissions.
// Everything lives in one directory, key files 0600, made on first use.
package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/clinicrelay/clinicrelay/subjects"
)

// Account names.
const (
	OperatorName = "clinicrelay"
	SysAccount   = "SYS"
	AppAccount   = "APP"
	agentRole    = "clinic-agent"
)

// Keys is the relay's key material, loaded from (or created in) one directory.
type Keys struct {
	dir string

	mu          sync.Mutex
	operator    nkeys.KeyPair
	sys, app    nkeys.KeyPair
	agentSigner nkeys.KeyPair
	OperatorJWT string
	SysJWT      string
	appJWT      string
}

// Open loads the key material in dir, creating it on first use.
func Open(dir string) (*Keys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth dir: %w", err)
	}
	k := &Keys{dir: dir}
	var err error
	load := func(name string, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
		if err != nil {
			return nil
		}
		var kp nkeys.KeyPair
		kp, err = k.loadOrCreateKey(name, create)
		return kp
	}
	k.operator = load("operator.nk", nkeys.CreateOperator)
	k.sys = load("sys.nk", nkeys.CreateAccount)
	k.app = load("app.nk", nkeys.CreateAccount)
	k.agentSigner = load("agent-signer.nk", nkeys.CreateAccount)
	if err != nil {
		return nil, err
	}
	if err := k.splitAgents(); err != nil {
		return nil, err
	}
	if k.OperatorJWT, err = k.operatorJWT(); err != nil {
		return nil, err
	}
	if k.SysJWT, err = k.accountJWT(k.sys, SysAccount, nil); err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(dir, "app.jwt")); err == nil {
		k.appJWT = string(b)
		if err := k.refreshAppJWT(); err != nil {
			return nil, err
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		if err := k.writeAppJWT(nil); err != nil {
			return nil, err
		}
	} else {
		return nil, fmt.Errorf("read app.jwt: %w", err)
	}
	return k, nil
}

func (k *Keys) loadOrCreateKey(name string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	path := filepath.Join(k.dir, name)
	seed, err := os.ReadFile(path)
	if err == nil {
		kp, err := nkeys.FromSeed(seed)
		if err != nil {
			return nil, fmt.Errorf("key %s is not an nkey seed", path)
		}
		return kp, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	kp, err := create()
	if err != nil {
		return nil, err
	}
	seed, _ = kp.Seed()
	if err := writeFile(path, seed); err != nil {
		return nil, err
	}
	return kp, nil
}

// agentsFile lists the agent user keys issued for clinic, one file per
// clinic so that onboarding the ten-thousandth clinic writes one small file.
func agentsFile(clinic string) string { return filepath.Join("agents", clinic+".json") }

// splitAgents moves a data dir's single agents.json (written before there
// was a file per clinic) into agents/.
func (k *Keys) splitAgents() error {
	unlock, err := k.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.MkdirAll(filepath.Join(k.dir, "agents"), 0o700); err != nil {
		return fmt.Errorf("agents dir: %w", err)
	}
	old := map[string][]string{}
	if err := k.readJSON("agents.json", &old); err != nil || len(old) == 0 {
		return err
	}
	for clinic, keys := range old {
		if subjects.ValidClinicID(clinic) != nil {
			continue
		}
		var have []string
		if err := k.readJSON(agentsFile(clinic), &have); err != nil {
			return err
		}
		b, _ := json.Marshal(append(have, keys...))
		if err := writeFile(filepath.Join(k.dir, agentsFile(clinic)), b); err != nil {
			return err
		}
	}
	return os.Remove(filepath.Join(k.dir, "agents.json"))
}

// writeFile writes data atomically with mode 0600.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func (k *Keys) readJSON(name string, v any) error {
	b, err := os.ReadFile(filepath.Join(k.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
}

func (k *Keys) operatorJWT() (string, error) {
	pub, _ := k.operator.PublicKey()
	sysPub, _ := k.sys.PublicKey()
	oc := jwt.NewOperatorClaims(pub)
	oc.Name = OperatorName
	oc.SystemAccount = sysPub
	return oc.Encode(k.operator)
}

// accountJWT signs an account; app gets JetStream and the agent signing key.
func (k *Keys) accountJWT(acc nkeys.KeyPair, name string, revocations jwt.RevocationList) (string, error) {
	pub, _ := acc.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	if name == AppAccount {
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		signer, _ := k.agentSigner.PublicKey()
		scope := jwt.NewUserScope()
		scope.Key = signer
		scope.Role = agentRole
		scope.Description = "clinic agents: least privilege for the clinic in the user's clinic tag"
		perms := subjects.AgentPermissions(subjects.AgentTemplate)
		scope.Template.Pub.Allow.Add(perms.PubAllow...)
		scope.Template.Sub.Allow.Add(perms.SubAllow...)
		scope.Template.Limits.NatsLimits = jwt.NatsLimits{Subs: subjects.AgentMaxSubs, Data: -1,
			Payload: subjects.AgentMaxPayload}
		ac.SigningKeys.AddScopedSigner(scope)
		ac.Revocations = revocations
	}
	return ac.Encode(k.operator)
}

func (k *Keys) writeAppJWT(rev jwt.RevocationList) error {
	s, err := k.accountJWT(k.app, AppAccount, rev)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(k.dir, "app.jwt"), []byte(s)); err != nil {
		return err
	}
	k.appJWT = s
	return nil
}

// refreshAppJWT signs the APP account again, its revocations kept, when the
// agents' permission template it carries is not the current one
// (subjects.AgentPermissions changed in an upgrade): every agent's grants
// follow at the next start, with no creds to reissue.
func (k *Keys) refreshAppJWT() error {
	unlock, err := k.lock()
	if err != nil {
		return err
	}
	defer unlock()
	ac, err := jwt.DecodeAccountClaims(k.appJWT)
	if err != nil {
		return fmt.Errorf("decode app jwt: %w", err)
	}
	want, err := k.accountJWT(k.app, AppAccount, ac.Revocations)
	if err != nil {
		return err
	}
	wc, err := jwt.DecodeAccountClaims(want)
	if err != nil {
		return fmt.Errorf("decode app jwt: %w", err)
	}
	if agentTemplate(ac) == agentTemplate(wc) {
		return nil
	}
	return k.writeAppJWT(ac.Revocations)
}

// agentTemplate is the agent signing key's permission template in ac, as JSON.
func agentTemplate(ac *jwt.AccountClaims) string {
	var out []byte
	for _, s := range ac.SigningKeys {
		if us, ok := s.(*jwt.UserScope); ok && us.Role == agentRole {
			out, _ = json.Marshal(us.Template)
		}
	}
	return string(out)
}

// AppJWT is the APP account's current JWT, revocations included.
func (k *Keys) AppJWT() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.appJWT
}

// OperatorPublicKey, SysPublicKey and AppPublicKey name the parties.
func (k *Keys) OperatorPublicKey() string { p, _ := k.operator.PublicKey(); return p }
func (k *Keys) SysPublicKey() string      { p, _ := k.sys.PublicKey(); return p }
func (k *Keys) AppPublicKey() string      { p, _ := k.app.PublicKey(); return p }

// OperatorClaims decodes the operator JWT for the server's TrustedOperators.
func (k *Keys) OperatorClaims() (*jwt.OperatorClaims, error) {
	return jwt.DecodeOperatorClaims(k.OperatorJWT)
}

// AgentCreds mints a creds file for clinic's agent, signed by the scoped agent
// key, and records its public key so it can be revoked.
func (k *Keys) AgentCreds(clinic string) ([]byte, error) {
	if err := subjects.ValidClinicID(clinic); err != nil {
		return nil, err
	}
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = "agent-" + clinic
	uc.IssuerAccount = k.AppPublicKey()
	uc.Tags.Add(subjects.TagClinic + ":" + clinic)
	uc.SetScoped(true)
	token, err := uc.Encode(k.agentSigner)
	if err != nil {
		return nil, fmt.Errorf("sign agent %s: %w", clinic, err)
	}
	unlock, err := k.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	var keys []string
	if err := k.readJSON(agentsFile(clinic), &keys); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(append(keys, pub))
	if err := writeFile(filepath.Join(k.dir, agentsFile(clinic)), b); err != nil {
		return nil, err
	}
	seed, _ := user.Seed()
	return jwt.FormatUserConfig(token, seed)
}

// UserCreds mints a creds file for a named user of the APP account (or of SYS
// when sys is set) with the given permissions; nil permissions allow everything.
func (k *Keys) UserCreds(name string, perms *subjects.Permissions, sys bool) ([]byte, error) {
	acc := k.app
	if sys {
		acc = k.sys
	}
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	if perms != nil {
		uc.Pub.Allow.Add(perms.PubAllow...)
		uc.Sub.Allow.Add(perms.SubAllow...)
	}
	token, err := uc.Encode(acc)
	if err != nil {
		return nil, fmt.Errorf("sign user %s: %w", name, err)
	}
	seed, _ := user.Seed()
	return jwt.FormatUserConfig(token, seed)
}

// RevokeClinic revokes every agent credential ever issued for clinic and
// returns the new APP account JWT, which the server must be given.
func (k *Keys) RevokeClinic(clinic string) (string, int, error) {
	return k.revise(func(rev jwt.RevocationList) (int, error) {
		var keys []string
		if err := k.readJSON(agentsFile(clinic), &keys); err != nil {
			return 0, err
		}
		now := time.Now().Unix() + 1 // creds minted this very second are revoked too
		for _, pub := range keys {
			rev.Revoke(pub, time.Unix(now, 0))
		}
		return len(keys), nil
	})
}

// revise changes the APP account's revocations with fn, under the lock, and
// signs the account again unless fn changed none. It returns the account's
// JWT, which the server must be given, and fn's count.
func (k *Keys) revise(fn func(jwt.RevocationList) (int, error)) (string, int, error) {
	unlock, err := k.lock()
	if err != nil {
		return "", 0, err
	}
	defer unlock()
	ac, err := jwt.DecodeAccountClaims(k.appJWT)
	if err != nil {
		return "", 0, fmt.Errorf("decode app jwt: %w", err)
	}
	rev := ac.Revocations
	if rev == nil {
		rev = jwt.RevocationList{}
	}
	n, err := fn(rev)
	if err != nil || n == 0 {
		return k.appJWT, n, err
	}
	if err := k.writeAppJWT(rev); err != nil {
		return "", 0, err
	}
	return k.appJWT, n, nil
}

// lock takes the in-process mutex and the auth dir's file lock, then
// re-reads the files other processes may have changed (the relay and the
// relay command both mint and revoke), so no update is lost.
func (k *Keys) lock() (func(), error) {
	k.mu.Lock()
	f, err := os.OpenFile(filepath.Join(k.dir, "auth.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		k.mu.Unlock()
		return nil, fmt.Errorf("auth lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		k.mu.Unlock()
		return nil, fmt.Errorf("auth lock: %w", err)
	}
	unlock := func() { f.Close(); k.mu.Unlock() }
	if b, err := os.ReadFile(filepath.Join(k.dir, "app.jwt")); err == nil {
		k.appJWT = string(b)
	}
	return unlock, nil
}
