package services

import (
	"sync"
	"time"

	"github.com/clinicrelay/clinicrelay/subjects"
)

// Clinic is the public profile the relay keeps in CLINICS under the clinic's ID.
type Clinic struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	TimeZone  string    `json:"timezone"`
	CreatedAt time.Time `json:"created_at"`
	Revoked   bool      `json:"revoked,omitempty"`
}

// Validate checks the clinic's ID, name and time zone.
func (c Clinic) Validate() error {
	f := FieldErrors{}
	if err := subjects.ValidClinicID(c.ID); err != nil {
		f.Add("slug", err.Error())
	}
	if k, m := nameProblem(c.Name); m != "" {
		f.AddKey("name", k, m)
	}
	if _, err := LoadZone(c.TimeZone); err != nil {
		f.Add("timezone", err.Error())
	}
	return f.Err()
}

// Location is the clinic's time zone; UTC if it cannot be loaded (the zone
// is checked when the clinic is added, and binaries embed time/tzdata).
func (c Clinic) Location() *time.Location {
	if loc, err := LoadZone(c.TimeZone); err == nil {
		return loc
	}
	return time.UTC
}

// Today is the local date in loc at now, as midnight UTC of that date: the
// form every date range of slots is walked in.
func Today(now time.Time, loc *time.Location) time.Time {
	y, m, d := now.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// LoadZone loads an IANA time zone; "" and "Local" are refused so that a clinic
// never silently follows the server's zone.
func LoadZone(name string) (*time.Location, error) {
	if name == "" || name == "Local" {
		return nil, Errorf(EInvalid, "timezone must be an IANA zone such as America/Toronto")
	}
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, Errorf(EInvalid, "unknown timezone %q", name)
	}
	zones.Store(name, loc)
	return loc, nil
}

// zones caches loaded zones: time.LoadLocation reads and parses the zone
// data on every call, and pages resolve a clinic's zone for every slot.
var zones sync.Map // name -> *time.Location

// Provider is a practitioner whose time patients can request.
type Provider struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Policy is what patients may book and change online with them.
	Policy BookingPolicy `json:"policy,omitzero"`
}

// Heartbeat is what the agent writes to <clinic>.seen.
type Heartbeat struct {
	At        time.Time `json:"at"`
	Connector string    `json:"connector"`
	Healthy   bool      `json:"healthy"`
	// Problem says what is wrong when not Healthy, e.g. "PMS unreachable".
	Problem string `json:"problem,omitempty"`
	// Rejected counts what the agent left out of what the clinic's system
	// gave it, because the relay would refuse it ("PMS data rejected: 3
	// slots on 1 day"); its other data goes on, so the agent stays Healthy.
	Rejected string `json:"rejected,omitempty"`
}
