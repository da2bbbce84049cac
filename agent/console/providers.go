package console

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/clinicrelay/clinicrelay/services"
)

// Providers returns the providers' schedules, in the order they were set.
func (c *Console) Providers(ctx context.Context) ([]services.ProviderSchedule, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var list []services.ProviderSchedule
	err := c.db.View(func(tx *bolt.Tx) error {
		var err error
		list, err = readProviders(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("console: read providers: %w", err)
	}
	return list, nil
}

// SetProviders replaces the providers' schedules after validating each one;
// errors name fields like "providers[0].slot_minutes". Requests already
// stored keep their slots.
func (c *Console) SetProviders(ctx context.Context, list []services.ProviderSchedule) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validateProviders(list); err != nil {
		return err
	}
	list = normalize(list)
	if err := c.db.Update(func(tx *bolt.Tx) error { return writeProviders(tx, list) }); err != nil {
		return fmt.Errorf("console: write providers: %w", err)
	}
	c.log.Info("providers set", "providers", len(list))
	c.notify()
	return nil
}

// putProvider adds p, or replaces the provider with its ID, in one
// transaction. Errors name p's fields without a prefix ("slot_minutes").
func (c *Console) putProvider(ctx context.Context, p services.ProviderSchedule) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := p.Validate(""); err != nil {
		return err
	}
	p = normalize([]services.ProviderSchedule{p})[0]
	err := c.db.Update(func(tx *bolt.Tx) error {
		list, err := readProviders(tx)
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(list, func(q services.ProviderSchedule) bool { return q.ID == p.ID }); i >= 0 {
			list[i] = p
		} else {
			list = append(list, p)
		}
		return writeProviders(tx, list)
	})
	if err != nil {
		return fmt.Errorf("console: write provider %s: %w", p.ID, err)
	}
	c.log.Info("provider saved", "provider_id", p.ID)
	c.notify()
	return nil
}

func validateProviders(list []services.ProviderSchedule) error {
	f := services.FieldErrors{}
	seen := map[string]int{}
	for i, p := range list {
		prefix := fmt.Sprintf("providers[%d].", i)
		var e *services.Error
		if err := p.Validate(prefix); errors.As(err, &e) {
			for k, v := range e.Fields {
				f.Add(k, v)
			}
		}
		if j, ok := seen[p.ID]; ok {
			f.Add(prefix+"id", fmt.Sprintf("id %q is already used by providers[%d]", p.ID, j))
		}
		seen[p.ID] = i
	}
	return f.Err()
}

// normalize returns a copy of list with trimmed names, empty rather than nil
// hours and closures, and sorted closures.
func normalize(list []services.ProviderSchedule) []services.ProviderSchedule {
	out := make([]services.ProviderSchedule, len(list))
	for i, p := range list {
		p.Name = strings.TrimSpace(p.Name)
		hours := make(map[string][]services.Interval, len(p.Hours))
		for day, ivs := range p.Hours {
			if len(ivs) > 0 {
				hours[day] = slices.Clone(ivs)
			}
		}
		p.Hours = hours
		closures := append([]string{}, p.Closures...)
		slices.Sort(closures)
		p.Closures = slices.Compact(closures)
		out[i] = p
	}
	return out
}

// FreeSlots lists the providers and their slots that start on the local dates
// [from, to) in loc (the clinic's zone when nil), without slots held by a
// pending, booked or proposed request and without slots that have started.
// Slots are sorted by start, then provider.
func (c *Console) FreeSlots(ctx context.Context, from, to time.Time, loc *time.Location) ([]services.Provider, []services.Slot, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if loc == nil {
		_, loc = c.clinicInfo()
	}
	now := c.now()
	providers := []services.Provider{}
	free := []services.Slot{}
	err := c.db.View(func(tx *bolt.Tx) error {
		list, err := readProviders(tx)
		if err != nil {
			return err
		}
		taken := tx.Bucket(bucketTaken)
		for _, p := range list {
			providers = append(providers, p.Provider)
			for _, s := range p.Slots(from, to, loc) {
				if !s.Start.Before(now) && taken.Get([]byte(s.ID)) == nil {
					free = append(free, s)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("console: free slots: %w", err)
	}
	slices.SortFunc(free, func(a, b services.Slot) int {
		if n := a.Start.Compare(b.Start); n != 0 {
			return n
		}
		return strings.Compare(a.ProviderID, b.ProviderID)
	})
	return providers, free, nil
}

// DemoProviders are the schedules SeedDemo adds.
func DemoProviders() []services.ProviderSchedule {
	lee := []services.Interval{{Start: "09:00", End: "12:00"}, {Start: "13:00", End: "17:00"}}
	patel := []services.Interval{{Start: "10:00", End: "16:00"}}
	return []services.ProviderSchedule{
		{
			Provider:    services.Provider{ID: "dr-lee", Name: "Dr. Alex Lee"},
			SlotMinutes: 30,
			Hours:       map[string][]services.Interval{"mon": lee, "tue": lee, "wed": lee, "thu": lee, "fri": lee},
			Closures:    []string{},
		},
		{
			Provider:    services.Provider{ID: "dr-patel", Name: "Dr. Priya Patel"},
			SlotMinutes: 20,
			Hours:       map[string][]services.Interval{"tue": patel, "wed": patel, "thu": patel, "fri": patel, "sat": patel},
			Closures:    []string{},
		},
	}
}

// SeedDemo adds DemoProviders when there are no providers yet.
func (c *Console) SeedDemo(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	seeded := false
	err := c.db.Update(func(tx *bolt.Tx) error {
		list, err := readProviders(tx)
		if err != nil || len(list) > 0 {
			return err
		}
		seeded = true
		return writeProviders(tx, DemoProviders())
	})
	if err != nil {
		return fmt.Errorf("console: seed demo providers: %w", err)
	}
	if seeded {
		c.log.Info("demo providers added")
		c.notify()
	}
	return nil
}
