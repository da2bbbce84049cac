package fhir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// overlap is how far back each poll looks past the previous one, against
// clock skew between the agent and the PMS; what is seen twice is the same.
const overlap = time.Minute

// pageSize is the _count of every search; the connector follows next links.
const pageSize = "100"

// FreeSlots implements connector.Connector from the cache the polls keep, loading
// it first if no poll has yet.
func (c *Connector) FreeSlots(ctx context.Context, from, to time.Time, loc *time.Location) ([]services.Provider, []services.Slot, error) {
	c.mu.Lock()
	loaded := c.loadedDay != ""
	c.mu.Unlock()
	if !loaded {
		if err := c.poll(ctx); err != nil {
			return nil, nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var ps []services.Provider
	for _, p := range c.providers {
		ps = append(ps, p.Provider)
	}
	slices.SortFunc(ps, func(a, b services.Provider) int { return strings.Compare(a.ID, b.ID) })
	var out []services.Slot
	for id, s := range c.free {
		d := s.Start.In(loc)
		day := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, loc)
		if day.Before(from) || !day.Before(to) {
			continue
		}
		p, _ := c.providerOf(s)
		out = append(out, services.Slot{ID: id, ProviderID: p, Start: s.Start.UTC(), End: s.End.UTC()})
	}
	slices.SortFunc(out, func(a, b services.Slot) int {
		if n := a.Start.Compare(b.Start); n != 0 {
			return n
		}
		return strings.Compare(a.ID, b.ID)
	})
	return ps, out, nil
}

// Poll asks the PMS what changed now, as Run does every PollEvery.
func (c *Connector) Poll(ctx context.Context) error { return c.poll(ctx) }

// poll brings the cache up to date: everything on the first poll and on a
// new local date (the window moves), else what changed since the last poll.
// Appointments the connector made that changed become outcomes.
func (c *Connector) poll(ctx context.Context) error {
	c.pollMu.Lock()
	defer c.pollMu.Unlock()
	start := c.cfg.Now()
	c.mu.Lock()
	loc, since, loadedDay := c.loc, c.since, c.loadedDay
	c.mu.Unlock()
	today := services.Today(start, loc)
	full := loadedDay != today.Format(time.DateOnly)
	err := c.pollOnce(ctx, today, since, full)
	c.track(err)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.since, c.loadedDay = start.Add(-overlap), today.Format(time.DateOnly)
	c.mu.Unlock()
	return nil
}

func (c *Connector) pollOnce(ctx context.Context, today, since time.Time, full bool) error {
	if full {
		if _, err := c.loadSchedules(ctx, url.Values{}); err != nil {
			return err
		}
		if err := c.loadFree(ctx, today, nil); err != nil {
			return err
		}
		// Outcomes of requests from the last 30 days, as a restart forgot
		// which it published (publishing again changes nothing).
		since = c.cfg.Now().Add(-services.RequestLifetime)
	} else {
		q := url.Values{"_lastUpdated": {"gt" + fhirTime(since)}}
		added, err := c.loadSchedules(ctx, q)
		if err != nil {
			return err
		}
		if len(added) > 0 { // new or active again: their slots, all of them
			if err := c.loadFree(ctx, today, added); err != nil {
				return err
			}
		}
		if err := c.updateSlots(ctx, today, since); err != nil {
			return err
		}
	}
	return c.followAppointments(ctx, since)
}

// loadSchedules reads Schedules (those matching q) into the providers, and
// returns the schedules that are new or active again. An inactive schedule's
// provider and slots leave the site.
func (c *Connector) loadSchedules(ctx context.Context, q url.Values) ([]string, error) {
	q.Set("_count", pageSize)
	var got []schedule
	err := c.c.search(ctx, "Schedule", q, func(raw json.RawMessage) error {
		var s schedule
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("decode a Schedule: %w", err)
		}
		got = append(got, s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	names := map[string]string{} // schedule ID → the practitioner's name, when the reference has no display
	for _, s := range got {
		if a := s.practitioner(); a.Display == "" && a.id("Practitioner") != "" {
			if n, err := c.practitionerName(ctx, a.id("Practitioner")); err == nil {
				names[s.ID] = n
			} else if !errors.Is(err, ErrNotFound) {
				return nil, err
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var added []string
	for _, s := range got {
		if s.Active != nil && !*s.Active {
			if id, ok := c.schedules[s.ID]; ok {
				delete(c.providers, id)
				delete(c.schedules, s.ID)
				for sid, sl := range c.free {
					if sl.Schedule.id("Schedule") == s.ID {
						delete(c.free, sid)
					}
				}
				c.allDays = true
			}
			continue
		}
		id, ok := c.schedules[s.ID]
		if !ok {
			id = c.providerID(s.ID)
			c.schedules[s.ID] = id
			c.allDays = true
			added = append(added, s.ID)
		}
		actor := s.practitioner()
		name := actor.Display
		if name == "" {
			name = names[s.ID]
		}
		if name == "" {
			name = id
		}
		c.providers[id] = provider{Provider: services.Provider{ID: id, Name: name}, schedule: s.ID, actor: actor}
	}
	return added, nil
}

// providerID turns a Schedule's ID into a provider ID (lower-case letters,
// digits and dashes), unique among the providers.
func (c *Connector) providerID(schedule string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(schedule) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	id := strings.Trim(b.String(), "-")
	if len(id) > 36 {
		id = id[:36]
	}
	if id == "" {
		id = "schedule"
	}
	base := id
	for n := 2; ; n++ {
		if _, taken := c.providers[id]; !taken && subjects.ValidProviderID(id) == nil {
			return id
		}
		id = fmt.Sprintf("%s-%d", base, n)
	}
}

// loadFree reads every free Slot in the window of the schedules only (nil:
// of every schedule, replacing the cache).
func (c *Connector) loadFree(ctx context.Context, today time.Time, only []string) error {
	c.mu.Lock()
	scheds := only
	if only == nil {
		for s := range c.schedules {
			scheds = append(scheds, s)
		}
	}
	end := today.AddDate(0, 0, c.cfg.Days)
	c.mu.Unlock()
	free := map[string]slot{}
	for _, s := range scheds {
		q := url.Values{"schedule": {"Schedule/" + s}, "status": {"free"}, "_count": {pageSize},
			"start": {"ge" + fhirTime(today), "lt" + fhirTime(end)}}
		err := c.c.search(ctx, "Slot", q, func(raw json.RawMessage) error {
			var sl slot
			if err := json.Unmarshal(raw, &sl); err != nil {
				return fmt.Errorf("decode a Slot: %w", err)
			}
			c.mu.Lock()
			if id, ok := c.slotID(sl); ok && sl.Status == "free" {
				free[id] = sl
			}
			c.mu.Unlock()
			return nil
		})
		if err != nil {
			return err
		}
	}
	c.mu.Lock()
	if only == nil {
		c.free = free
	} else {
		for id, s := range free {
			c.free[id] = s
		}
	}
	c.allDays = true
	c.mu.Unlock()
	c.signal()
	return nil
}

// updateSlots applies the Slots changed since the last poll: a slot that
// turned free joins the cache, one that did not leaves it.
func (c *Connector) updateSlots(ctx context.Context, today, since time.Time) error {
	end := today.AddDate(0, 0, c.cfg.Days)
	q := url.Values{"_lastUpdated": {"gt" + fhirTime(since)}, "_count": {pageSize}}
	var touched bool
	err := c.c.search(ctx, "Slot", q, func(raw json.RawMessage) error {
		var sl slot
		if err := json.Unmarshal(raw, &sl); err != nil {
			return fmt.Errorf("decode a Slot: %w", err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		id, ok := c.slotID(sl)
		if !ok {
			return nil
		}
		_, had := c.free[id]
		if sl.Status == "free" && !sl.Start.Before(today) && sl.Start.Before(end) {
			c.free[id] = sl
		} else {
			delete(c.free, id)
		}
		if _, has := c.free[id]; had != has {
			c.changes, touched = append(c.changes, id), true
		}
		return nil
	})
	if touched {
		c.signal()
	}
	return err
}

// slotID is the services slot ID of a FHIR slot of a known schedule.
// Callers hold mu.
func (c *Connector) slotID(s slot) (string, bool) {
	p, ok := c.schedules[s.Schedule.id("Schedule")]
	if !ok || s.Start.IsZero() {
		return "", false
	}
	id := services.SlotID(p, s.Start)
	return id, subjects.ValidSlotID(id) == nil
}

// providerOf is the provider ID of a FHIR slot. Callers hold mu.
func (c *Connector) providerOf(s slot) (string, bool) {
	p, ok := c.schedules[s.Schedule.id("Schedule")]
	return p, ok
}

// practitionerName reads a Practitioner's name: its text, else its given
// names and family name.
func (c *Connector) practitionerName(ctx context.Context, id string) (string, error) {
	var p struct {
		Name []humanName `json:"name"`
	}
	if _, err := c.c.call(ctx, http.MethodGet, "Practitioner/"+url.PathEscape(id), nil, nil, &p); err != nil {
		return "", err
	}
	for _, n := range p.Name {
		if n.Text != "" {
			return n.Text, nil
		}
		if full := strings.TrimSpace(strings.Join(append(slices.Clone(n.Given), n.Family), " ")); full != "" {
			return full, nil
		}
	}
	return "", nil
}
