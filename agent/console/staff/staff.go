// Package staff is the front desk's accounts: users with a role (admin, or
// front desk, maybe limited to named providers), their argon2id passwords,
// sign-in with growing delays and a lockout, and sessions.
//
// Users live in a bbolt file of their own (staff.db in the agent's data
// dir), opened for each operation and closed after it, so that `clinic-agent
// user ...` works while the agent runs. Sessions live in the console's
// memory only: a restart signs everyone out, and no session token is ever on
// disk. Nothing here holds patient data.
package staff

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/clinicrelay/clinicrelay/internal/password"
	"github.com/clinicrelay/clinicrelay/services"
)

// Role is what a user may do at the console.
type Role string

const (
	// RoleAdmin manages users, providers and their hours, and decides every
	// provider's requests.
	RoleAdmin Role = "admin"
	// RoleFrontDesk decides requests: every provider's, or only those of
	// User.Providers when it names some.
	RoleFrontDesk Role = "frontdesk"
)

// User is a staff account as shown to admins: no password hash.
type User struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// Providers limits a front-desk user to these providers' requests;
	// empty: every provider's.
	Providers []string `json:"providers,omitempty"`
	Disabled  bool     `json:"disabled,omitempty"`
	// MustChange: the password is one-time and must be replaced before
	// anything else; it stops working at OneTimeUntil.
	MustChange   bool      `json:"must_change,omitempty"`
	OneTimeUntil time.Time `json:"one_time_until,omitzero"`
	CreatedAt    time.Time `json:"created_at"`
	PasswordAt   time.Time `json:"password_at"`
}

// Sees reports whether u may see and decide requests for provider.
func (u User) Sees(provider string) bool {
	return u.Role == RoleAdmin || len(u.Providers) == 0 || slices.Contains(u.Providers, provider)
}

// Admin reports whether u is an admin.
func (u User) Admin() bool { return u.Role == RoleAdmin }

// account is a user as stored.
type account struct {
	User
	Hash string `json:"hash"`
	// Gen changes whenever the sessions of this user must end: a new
	// password, a reset, disabling, a new role or providers.
	Gen uint64 `json:"gen"`
	// Unlocks counts an admin's unlocks and resets: the console's count
	// of failed sign-ins starts again when it changes.
	Unlocks uint64 `json:"unlocks,omitempty"`
}

// OneTimeLife is how long a one-time password works unused.
const OneTimeLife = 7 * 24 * time.Hour

// CheckName says why name cannot be a user name, or nil
// (services.CheckStaffName: the relay checks the names in audit events).
func CheckName(name string) error { return services.CheckStaffName(name) }

var usersBucket = []byte("users")

// Directory is the staff accounts in one file, and the console's sessions.
// Its methods are safe for concurrent use.
type Directory struct {
	path string
	now  func() time.Time
	// fileMu serialises this process's opens of the file; other processes
	// (the user command) wait on bbolt's file lock.
	fileMu sync.Mutex

	sessions sessions
	throttle throttle
}

// Config configures a Directory.
type Config struct {
	Path string           // the bbolt file, created with mode 0600
	Now  func() time.Time // nil: time.Now
	// IdleTimeout ends a session unused for this long (default
	// DefaultIdleTimeout); MaxSession ends any session (default
	// DefaultMaxSession).
	IdleTimeout, MaxSession time.Duration
}

// Session lifetimes by default.
const (
	DefaultIdleTimeout = 15 * time.Minute
	DefaultMaxSession  = 12 * time.Hour
)

// Open checks that the file at cfg.Path can be opened (creating it) and
// returns its Directory.
func Open(cfg Config) (*Directory, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxSession <= 0 {
		cfg.MaxSession = DefaultMaxSession
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("staff accounts: %w", err)
	}
	d := &Directory{path: cfg.Path, now: func() time.Time { return cfg.Now().UTC() }}
	d.sessions = sessions{idle: cfg.IdleTimeout, max: cfg.MaxSession, m: map[[32]byte]*session{}}
	d.throttle = throttle{names: map[string]*tries{}, addrs: map[string]*tries{}}
	return d, d.update(func(*bolt.Bucket) error { return nil })
}

// view and update run fn on the users bucket, the file open only meanwhile.
func (d *Directory) view(fn func(*bolt.Bucket) error) error { return d.tx(false, fn) }

func (d *Directory) update(fn func(*bolt.Bucket) error) error { return d.tx(true, fn) }

func (d *Directory) tx(write bool, fn func(*bolt.Bucket) error) error {
	d.fileMu.Lock()
	defer d.fileMu.Unlock()
	db, err := bolt.Open(d.path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("staff accounts %s: %w", d.path, err)
	}
	defer db.Close()
	if !write {
		return db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(usersBucket)
			if b == nil {
				return fn(nil)
			}
			return fn(b)
		})
	}
	return db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(usersBucket)
		if err != nil {
			return err
		}
		return fn(b)
	})
}

func get(b *bolt.Bucket, name string) (*account, error) {
	var v []byte
	if b != nil {
		v = b.Get([]byte(name))
	}
	if v == nil {
		return nil, services.Errorf(services.ENotFound, "no user %q", name)
	}
	var a account
	if err := json.Unmarshal(v, &a); err != nil {
		return nil, fmt.Errorf("decode user %s: %w", name, err)
	}
	return &a, nil
}

func put(b *bolt.Bucket, a *account) error {
	v, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return b.Put([]byte(a.Name), v)
}

// change applies fn to the user name and stores the result.
func (d *Directory) change(name string, fn func(*account) error) (User, error) {
	var u User
	err := d.update(func(b *bolt.Bucket) error {
		a, err := get(b, name)
		if err != nil {
			return err
		}
		if err := fn(a); err != nil {
			return err
		}
		u = a.User
		return put(b, a)
	})
	return u, err
}

// Any reports whether there is at least one user.
func (d *Directory) Any() (bool, error) {
	any := false
	err := d.view(func(b *bolt.Bucket) error {
		if b != nil {
			k, _ := b.Cursor().First()
			any = k != nil
		}
		return nil
	})
	return any, err
}

// List is every user, by name.
func (d *Directory) List() ([]User, error) {
	var out []User
	err := d.view(func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var a account
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decode user %s: %w", k, err)
			}
			out = append(out, a.User)
			return nil
		})
	})
	return out, err
}

// Get is the user name.
func (d *Directory) Get(name string) (User, error) {
	var u User
	err := d.view(func(b *bolt.Bucket) error {
		a, err := get(b, name)
		if err == nil {
			u = a.User
		}
		return err
	})
	return u, err
}

// Add makes a user and returns its one-time password, which must be
// replaced at first sign-in. providers limits a front-desk user.
func (d *Directory) Add(name string, role Role, providers []string) (string, error) {
	if err := CheckName(name); err != nil {
		return "", err
	}
	if err := checkRole(role, providers); err != nil {
		return "", err
	}
	pw := password.OneTime()
	hash, err := Hash(pw)
	if err != nil {
		return "", err
	}
	now := d.now()
	a := &account{User: User{Name: name, Role: role, Providers: slices.Clone(providers), MustChange: true,
		OneTimeUntil: now.Add(OneTimeLife), CreatedAt: now, PasswordAt: now}, Hash: hash}
	err = d.update(func(b *bolt.Bucket) error {
		if b.Get([]byte(name)) != nil {
			return services.Errorf(services.EConflict, "user %q exists already", name)
		}
		return put(b, a)
	})
	return pw, err
}

// Put makes the user name, or replaces it, with a password of the
// caller's that is not one-time (the demo's admin, printed at its start);
// the user's sessions end. Staff accounts get one-time passwords (Add).
func (d *Directory) Put(name string, role Role, providers []string, pw string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if err := checkRole(role, providers); err != nil {
		return err
	}
	if err := CheckPassword(name, pw); err != nil {
		return err
	}
	hash, err := Hash(pw)
	if err != nil {
		return err
	}
	now := d.now()
	return d.update(func(b *bolt.Bucket) error {
		a, err := get(b, name)
		if services.ErrorCode(err) == services.ENotFound {
			a, err = &account{User: User{Name: name, CreatedAt: now}}, nil
		}
		if err != nil {
			return err
		}
		a.Role, a.Providers, a.Disabled, a.MustChange, a.OneTimeUntil = role, slices.Clone(providers), false, false, time.Time{}
		a.Hash, a.PasswordAt = hash, now
		a.Unlocks++
		a.Gen++
		return put(b, a)
	})
}

func checkRole(role Role, providers []string) error {
	var fe services.FieldErrors
	switch role {
	case RoleAdmin:
		if len(providers) > 0 {
			fe.Add("providers", "an admin sees every provider: providers are for front-desk users")
		}
	case RoleFrontDesk:
		for _, p := range providers {
			if p == "" || len(p) > 64 {
				fe.Add("providers", "a provider ID must be 1 to 64 characters")
			}
		}
	default:
		fe.Add("role", "role must be admin or frontdesk")
	}
	return fe.Err()
}

// Reset gives the user a new one-time password, unlocks it and ends its
// sessions.
func (d *Directory) Reset(name string) (string, error) {
	pw := password.OneTime()
	hash, err := Hash(pw)
	if err != nil {
		return "", err
	}
	_, err = d.change(name, func(a *account) error {
		now := d.now()
		a.Hash, a.MustChange, a.OneTimeUntil, a.PasswordAt = hash, true, now.Add(OneTimeLife), now
		a.Unlocks++
		a.Gen++
		return nil
	})
	return pw, err
}

// SetRole changes what the user may do, and ends its sessions.
func (d *Directory) SetRole(name string, role Role, providers []string) error {
	if err := checkRole(role, providers); err != nil {
		return err
	}
	return d.guardAdmins(name, func(a *account) {
		a.Role, a.Providers = role, slices.Clone(providers)
		a.Gen++
	})
}

// Disable stops the user signing in and ends its sessions; the last
// enabled admin cannot be disabled.
func (d *Directory) Disable(name string) error {
	return d.guardAdmins(name, func(a *account) {
		a.Disabled = true
		a.Gen++
	})
}

// guardAdmins applies fn to the user name, unless that leaves no enabled
// admin.
func (d *Directory) guardAdmins(name string, fn func(*account)) error {
	return d.update(func(b *bolt.Bucket) error {
		a, err := get(b, name)
		if err != nil {
			return err
		}
		fn(a)
		if !a.Disabled && a.Role == RoleAdmin {
			return put(b, a)
		}
		admins := 0
		err = b.ForEach(func(k, v []byte) error {
			var o account
			if err := json.Unmarshal(v, &o); err != nil {
				return err
			}
			if string(k) != name && !o.Disabled && o.Role == RoleAdmin {
				admins++
			}
			return nil
		})
		if err != nil {
			return err
		}
		if admins == 0 {
			return services.Errorf(services.EConflict, "%s is the last admin: add another admin first", name)
		}
		return put(b, a)
	})
}

// Enable lets a disabled user sign in again.
func (d *Directory) Enable(name string) error {
	_, err := d.change(name, func(a *account) error {
		a.Disabled = false
		return nil
	})
	return err
}

// Unlock clears the user's failed sign-ins.
func (d *Directory) Unlock(name string) error {
	_, err := d.change(name, func(a *account) error {
		a.Unlocks++
		return nil
	})
	return err
}
