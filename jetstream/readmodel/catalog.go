package readmodel

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// Catalog is the web front's in-memory view of CLINICS, AVAILABILITY and
// HOLDS, kept current by watches: pages and the slots API never wait on NATS.
type Catalog struct {
	clinics *cjs.Mirror[clinicValue]
	days    *cjs.Mirror[*lazyDay]
	holds   *cjs.Mirror[json.RawMessage]
	now     func() time.Time
	log     *slog.Logger
	// versions counts the changes to each clinic's keys, so the web front
	// can keep what it rendered until the clinic changes.
	versions sync.Map // clinic -> *atomic.Uint64
	// released keeps when each hold went away: see ReleaseGrace.
	released sync.Map // hold key -> time.Time (monotonic)
	releases atomic.Uint64
}

// ReleaseGrace is how long a slot still counts as held after its hold went
// away. The clinic's agent publishes the day without the slot before it
// releases the hold, but the catalog watches AVAILABILITY and HOLDS apart:
// without the grace, a hold's release seen before that day's new value
// would offer the slot for an instant, and a second patient could get it.
const ReleaseGrace = 2 * time.Second

var _ services.Directory = (*Catalog)(nil)

// NewCatalog returns an empty catalog; Run fills it.
func NewCatalog(now func() time.Time) *Catalog {
	if now == nil {
		now = time.Now
	}
	c := &Catalog{now: now, log: slog.New(slog.DiscardHandler)}
	c.clinics = cjs.NewMirror(cjs.MirrorConfig[clinicValue]{Decode: decodeClinicValue, OnChange: c.changed,
		OnInvalid: c.dropped(subjects.BucketClinics), OnVanished: c.reread(subjects.BucketClinics)})
	c.days = cjs.NewMirror(cjs.MirrorConfig[*lazyDay]{Decode: c.newLazyDay, OnChange: c.changed,
		OnInvalid: c.dropped(subjects.BucketAvailability), OnVanished: c.reread(subjects.BucketAvailability)})
	c.holds = cjs.NewMirror(cjs.MirrorConfig[json.RawMessage]{Decode: decodeHold, OnChange: c.holdChanged,
		OnInvalid: c.dropped(subjects.BucketHolds), OnVanished: c.reread(subjects.BucketHolds)})
	return c
}

// SetCheckEvery sets how often the mirrors look for values that vanished
// unannounced (MirrorCheckEvery by default); call it before Run.
func (c *Catalog) SetCheckEvery(d time.Duration) {
	c.clinics.SetCheckEvery(d)
	c.days.SetCheckEvery(d)
	c.holds.SetCheckEvery(d)
}

// clinicValue is a CLINICS value decoded once, when it is written: which
// field is set depends on the key (<clinic>, <clinic>.providers, <clinic>.seen).
type clinicValue struct {
	clinic    services.Clinic
	providers []services.Provider
	seen      services.Heartbeat
	sealKey   string
}

func decodeClinicValue(key string, b []byte) (clinicValue, error) {
	var v clinicValue
	var err error
	clinic, sub, _ := strings.Cut(key, ".")
	if subjects.ValidClinicID(clinic) != nil {
		return v, fmt.Errorf("key %q is not under a clinic", key)
	}
	switch sub {
	default:
		return v, fmt.Errorf("key %q is none of the keys of CLINICS", key)
	case "":
		err = json.Unmarshal(b, &v.clinic)
	case subjects.KeyProviders:
		err = json.Unmarshal(b, &v.providers)
	case subjects.KeySeen:
		err = json.Unmarshal(b, &v.seen)
	case subjects.KeySealKey:
		if err = json.Unmarshal(b, &v.sealKey); err == nil && !nkeys.IsValidPublicCurveKey(v.sealKey) {
			err = fmt.Errorf("%q is not a public curve key", v.sealKey)
		}
	}
	return v, err
}

// lazyDay is an AVAILABILITY value kept as written until it is first read,
// then decoded and checked once (DecodeDay). A relay restarting over
// thousands of clinics catches up at the speed NATS delivers their days, not
// at the speed of decoding 60 days of every clinic; a clinic's days are
// decoded when a patient first asks for them.
type lazyDay struct {
	key  string
	once sync.Once
	raw  []byte
	day  services.Day
	err  error
}

func (c *Catalog) newLazyDay(key string, value []byte) (*lazyDay, error) {
	if err := dayKeyInWindow(key, c.now()); err != nil {
		return nil, err
	}
	return &lazyDay{key: key, raw: bytes.Clone(value)}, nil
}

// dayKeyInWindow refuses an AVAILABILITY key that is not <clinic>.<date>
// with the date in the booking window: the mirror keeps no other, whatever
// the bucket holds (keys written before the relay checked agents' writes).
func dayKeyInWindow(key string, now time.Time) error {
	clinic, date, _ := strings.Cut(key, ".")
	if subjects.ValidClinicID(clinic) != nil || subjects.ValidDate(date) != nil {
		return fmt.Errorf("key %q is not <clinic>.<date>", key)
	}
	// A day before the window is yesterday's or older: agents delete them.
	first, last := cjs.AvailabilityWindow(now)
	if date < first || date > last {
		return fmt.Errorf("day %s is outside the booking window %s to %s", date, first, last)
	}
	return nil
}

// decodeHold refuses a HOLDS key that is not <clinic>.<slot id>.
func decodeHold(key string, value []byte) (json.RawMessage, error) {
	clinic, slot, _ := strings.Cut(key, ".")
	if subjects.ValidClinicID(clinic) != nil || subjects.ValidSlotID(slot) != nil {
		return nil, fmt.Errorf("key %q is not <clinic>.<slot id>", key)
	}
	var v json.RawMessage
	return v, json.Unmarshal(value, &v)
}

// day gets a clinic's day: false when there is none or its value was
// refused (logged once, when first read).
func (c *Catalog) day(clinic, date string) (services.Day, bool) {
	l, ok := c.days.Get(subjects.AvailabilityKey(clinic, date))
	if !ok {
		return services.Day{}, false
	}
	l.once.Do(func() {
		l.day, l.err = cjs.DecodeDay(l.key, l.raw)
		l.raw = nil
		if l.err != nil {
			c.dropped(subjects.BucketAvailability)(l.key, l.err)
		}
	})
	return l.day, l.err == nil
}

// changed counts a change to a key of the clinic the key starts with.
func (c *Catalog) changed(key string) {
	clinic, _, _ := strings.Cut(key, ".")
	if subjects.ValidClinicID(clinic) != nil {
		return // a key the mirrors refused: no clinic to count it for
	}
	v, _ := c.versions.LoadOrStore(clinic, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(1)
}

// Version changes whenever anything of clinic does: its profile, providers,
// heartbeat, availability or holds.
func (c *Catalog) Version(clinic string) uint64 {
	if v, ok := c.versions.Load(clinic); ok {
		return v.(*atomic.Uint64).Load()
	}
	return 0
}

// SetLogger makes the catalog report the values it drops (it is silent by
// default). Call it before Run.
func (c *Catalog) SetLogger(l *slog.Logger) { c.log = l.With("component", "catalog") }

// dropped logs a value of bucket that a mirror refused: the key and why,
// never the value.
func (c *Catalog) dropped(bucket string) func(key string, err error) {
	return func(key string, err error) {
		c.log.Warn("value dropped", "bucket", bucket, "key", key, "err", err.Error())
	}
}

// reread logs that values of bucket vanished and the bucket is read again.
func (c *Catalog) reread(bucket string) func(why string) {
	return func(why string) {
		c.log.Warn("values vanished: reading the bucket again", "bucket", bucket, "why", why)
	}
}

// Run watches the three buckets until ctx ends; ready is closed once all
// three have caught up.
func (c *Catalog) Run(ctx context.Context, js jetstream.JetStream, ready chan<- struct{}) error {
	type watch struct {
		bucket string
		run    func(context.Context, jetstream.KeyValue, string) error
		ready  <-chan struct{}
	}
	ws := []watch{
		{subjects.BucketClinics, c.clinics.Run, c.clinics.Ready()},
		{subjects.BucketAvailability, c.days.Run, c.days.Ready()},
		{subjects.BucketHolds, c.holds.Run, c.holds.Ready()},
	}
	errc := make(chan error, len(ws))
	for _, w := range ws {
		kv, err := js.KeyValue(ctx, w.bucket)
		if err != nil {
			return err
		}
		go func() { errc <- w.run(ctx, kv, ">") }()
	}
	go func() {
		for _, w := range ws {
			select {
			case <-w.ready:
			case <-ctx.Done():
				return
			}
		}
		close(ready)
	}()
	for range ws {
		if err := <-errc; err != nil {
			return err
		}
	}
	return nil
}

// Clinics lists active clinics by name.
func (c *Catalog) Clinics() []services.Clinic {
	var out []services.Clinic
	c.clinics.Range(func(k string, v clinicValue) bool {
		if subjects.IsClinicKey(k) && !v.clinic.Revoked {
			out = append(out, v.clinic)
		}
		return true
	})
	slices.SortFunc(out, func(a, b services.Clinic) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Clinic returns one clinic's profile.
func (c *Catalog) Clinic(id string) (services.Clinic, bool) {
	if subjects.ValidClinicID(id) != nil {
		return services.Clinic{}, false
	}
	v, ok := c.clinics.Get(subjects.ClinicKey(id))
	return v.clinic, ok
}

// Providers returns what the clinic's agent published.
func (c *Catalog) Providers(id string) []services.Provider {
	v, _ := c.clinics.Get(subjects.ClinicSubKey(id, subjects.KeyProviders))
	return v.providers
}

// Policy is the booking policy the clinic's agent published for provider
// (the zero policy for a provider it did not publish).
func (c *Catalog) Policy(clinic, provider string) services.BookingPolicy {
	for _, p := range c.Providers(clinic) {
		if p.ID == provider {
			return p.Policy
		}
	}
	return services.BookingPolicy{}
}

// SealKey is the public curve key the clinic's agent published.
func (c *Catalog) SealKey(id string) (string, bool) {
	v, ok := c.clinics.Get(subjects.ClinicSubKey(id, subjects.KeySealKey))
	return v.sealKey, ok
}

// LastSeen is the agent's last heartbeat, its time taken from the server's
// clock (the clinic PC's may be off); zero if it never connected.
func (c *Catalog) LastSeen(id string) services.Heartbeat {
	v, at, ok := c.clinics.GetAt(subjects.ClinicSubKey(id, subjects.KeySeen))
	if !ok {
		return services.Heartbeat{}
	}
	hb := v.seen
	hb.At = at
	return hb
}

func (c *Catalog) held(clinic, slot string) bool {
	key := subjects.HoldKey(clinic, slot)
	if _, ok := c.holds.Get(key); ok {
		return true
	}
	if at, ok := c.released.Load(key); ok {
		if time.Since(at.(time.Time)) < ReleaseGrace {
			return true
		}
		c.released.CompareAndDelete(key, at)
	}
	return false
}

// holdChanged notes when a hold goes away (see ReleaseGrace), and counts the
// change. Now and then it forgets releases older than the grace.
func (c *Catalog) holdChanged(key string) {
	if _, ok := c.holds.Get(key); !ok {
		c.released.Store(key, time.Now())
		// The slot comes back when the grace ends: a cached answer must
		// not outlive it.
		time.AfterFunc(ReleaseGrace, func() { c.changed(key) })
		if c.releases.Add(1)%1024 == 0 {
			c.released.Range(func(k, at any) bool {
				if time.Since(at.(time.Time)) >= ReleaseGrace {
					c.released.CompareAndDelete(k, at)
				}
				return true
			})
		}
	}
	c.changed(key)
}

// Slots lists free, unheld, future slots on local dates [from, to].
func (c *Catalog) Slots(clinic string, from, to time.Time) []services.Slot {
	now := c.now()
	policies := map[string]services.BookingPolicy{}
	for _, p := range c.Providers(clinic) {
		policies[p.ID] = p.Policy
	}
	var out []services.Slot
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		day, ok := c.day(clinic, d.Format(time.DateOnly))
		if !ok {
			continue
		}
		for _, s := range day.Slots {
			// Only what the provider's policy lets a patient request now:
			// nothing too soon or too far ahead is offered.
			if policies[s.ProviderID].Offers(now, s.Start) && !c.held(clinic, s.ID) {
				out = append(out, s)
			}
		}
	}
	return out
}

// FreeSlot finds a free, unheld slot by ID.
func (c *Catalog) FreeSlot(clinic, slotID string) (services.Slot, bool) {
	cl, ok := c.Clinic(clinic)
	if !ok {
		return services.Slot{}, false
	}
	_, start, err := services.ParseSlotID(slotID)
	if err != nil {
		return services.Slot{}, false
	}
	date := services.Date(start, cl.Location())
	day, ok := c.day(clinic, date)
	if !ok {
		return services.Slot{}, false
	}
	for _, s := range day.Slots {
		if s.ID == slotID {
			if !s.Start.After(c.now()) || c.held(clinic, s.ID) {
				return services.Slot{}, false
			}
			return s, true
		}
	}
	return services.Slot{}, false
}

// NextFree lists up to n free slots from today in the clinic's zone, looking
// 60 days ahead.
func (c *Catalog) NextFree(clinic string, n int) []services.Slot {
	cl, ok := c.Clinic(clinic)
	if !ok {
		return nil
	}
	today := services.Today(c.now(), cl.Location())
	var out []services.Slot
	for d := today; d.Before(today.AddDate(0, 0, 61)) && len(out) < n; d = d.AddDate(0, 0, 1) {
		out = append(out, c.Slots(clinic, d, d)...)
	}
	slices.SortFunc(out, func(a, b services.Slot) int { return a.Start.Compare(b.Start) })
	return out[:min(n, len(out))]
}
