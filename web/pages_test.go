package web

import (
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the DST pages must not depend on the host's zoneinfo

	"github.com/clinicrelay/clinicrelay/services"
)

// scheduleCatalog serves one clinic, maple, whose provider dr-lee is open
// 00:00-04:00 and 08:00-12:00 every day in 30-minute slots, all free.
type scheduleCatalog struct {
	zone string
	now  time.Time
}

var drLee = services.ProviderSchedule{Provider: services.Provider{ID: "dr-lee", Name: "Dr Lee"}, SlotMinutes: 30,
	Hours: func() map[string][]services.Interval {
		h := map[string][]services.Interval{}
		for _, d := range []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"} {
			h[d] = []services.Interval{{Start: "00:00", End: "04:00"}, {Start: "08:00", End: "12:00"}}
		}
		return h
	}()}

func (c scheduleCatalog) clinic() services.Clinic {
	return services.Clinic{ID: "maple", Name: "Maple Clinic", TimeZone: c.zone}
}

func (c scheduleCatalog) Clinic(id string) (services.Clinic, bool)   { return c.clinic(), id == "maple" }
func (c scheduleCatalog) Clinics() []services.Clinic                 { return []services.Clinic{c.clinic()} }
func (scheduleCatalog) Version(string) uint64                        { return 0 }
func (scheduleCatalog) SealKey(string) (string, bool)                { return "", false }
func (scheduleCatalog) Policy(string, string) services.BookingPolicy { return services.BookingPolicy{} }
func (scheduleCatalog) Providers(string) []services.Provider {
	return []services.Provider{drLee.Provider}
}
func (c scheduleCatalog) LastSeen(string) services.Heartbeat {
	return services.Heartbeat{At: c.now.Add(-5 * time.Minute)}
}

// Slots lists local dates [from, to], as the relay's catalog does.
func (c scheduleCatalog) Slots(_ string, from, to time.Time) []services.Slot {
	return drLee.Slots(from, to.AddDate(0, 0, 1), c.clinic().Location())
}

func (c scheduleCatalog) FreeSlot(_, id string) (services.Slot, bool) {
	_, start, err := services.ParseSlotID(id)
	if err != nil {
		return services.Slot{}, false
	}
	loc := c.clinic().Location()
	d := services.Today(start, loc)
	for _, s := range drLee.Slots(d, d.AddDate(0, 0, 1), loc) {
		if s.ID == id {
			return s, true
		}
	}
	return services.Slot{}, false
}

func (c scheduleCatalog) NextFree(_ string, n int) []services.Slot {
	d := services.Today(c.now, c.clinic().Location())
	return drLee.Slots(d, d.AddDate(0, 0, 2), c.clinic().Location())[:n]
}

func newPageServer(t *testing.T, zone string, now time.Time) http.Handler {
	t.Helper()
	cat := scheduleCatalog{zone: zone, now: now}
	s, err := New(Config{Catalog: cat, Booker: &services.Booker{Directory: cat, Now: func() time.Time { return now }}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return s.Handler()
}

// get fetches path with the given headers ("Name: value") and returns the response and body.
func get(t *testing.T, h http.Handler, path string, headers ...string) (*http.Response, string) {
	t.Helper()
	r := httptest.NewRequest("GET", path, nil)
	for _, hv := range headers {
		k, v, _ := strings.Cut(hv, ": ")
		r.Header.Add(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := w.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

var timeRE = regexp.MustCompile(`<time datetime="([^"]+)" data-zone="([^"]+)"[^>]*>([^<]+)</time>`)

// TestClinicPage_DSTDays: on the 2026 change days in Toronto and Paris the
// clinic page lists every slot under its local day, with its local time and
// zone abbreviation as text and its instant with the right offset in
// <time datetime>: the repeated hour twice, the skipped hour not at all.
func TestClinicPage_DSTDays(t *testing.T) {
	for _, tt := range []struct {
		name, zone, date string
		dayLabel         map[string]string // lang -> day link text
		want             []string          // datetime|text of the night period
	}{
		{"Toronto spring forward", "America/Toronto", "2026-03-08", map[string]string{"en": "Sun 8 Mar", "fr": "dim. 8 mars"}, []string{
			"2026-03-08T00:00:00-05:00|00:00 EST", "2026-03-08T00:30:00-05:00|00:30 EST",
			"2026-03-08T01:00:00-05:00|01:00 EST", "2026-03-08T01:30:00-05:00|01:30 EST",
			"2026-03-08T03:00:00-04:00|03:00 EDT", "2026-03-08T03:30:00-04:00|03:30 EDT"}},
		{"Toronto fall back", "America/Toronto", "2026-11-01", map[string]string{"en": "Sun 1 Nov", "fr": "dim. 1 nov."}, []string{
			"2026-11-01T00:00:00-04:00|00:00 EDT", "2026-11-01T00:30:00-04:00|00:30 EDT",
			"2026-11-01T01:00:00-04:00|01:00 EDT", "2026-11-01T01:30:00-04:00|01:30 EDT",
			"2026-11-01T01:00:00-05:00|01:00 EST", "2026-11-01T01:30:00-05:00|01:30 EST",
			"2026-11-01T02:00:00-05:00|02:00 EST", "2026-11-01T02:30:00-05:00|02:30 EST",
			"2026-11-01T03:00:00-05:00|03:00 EST", "2026-11-01T03:30:00-05:00|03:30 EST"}},
		{"Paris spring forward", "Europe/Paris", "2026-03-29", map[string]string{"en": "Sun 29 Mar", "fr": "dim. 29 mars"}, []string{
			"2026-03-29T00:00:00+01:00|00:00 CET", "2026-03-29T00:30:00+01:00|00:30 CET",
			"2026-03-29T01:00:00+01:00|01:00 CET", "2026-03-29T01:30:00+01:00|01:30 CET",
			"2026-03-29T03:00:00+02:00|03:00 CEST", "2026-03-29T03:30:00+02:00|03:30 CEST"}},
		{"Paris fall back", "Europe/Paris", "2026-10-25", map[string]string{"en": "Sun 25 Oct", "fr": "dim. 25 oct."}, []string{
			"2026-10-25T00:00:00+02:00|00:00 CEST", "2026-10-25T00:30:00+02:00|00:30 CEST",
			"2026-10-25T01:00:00+02:00|01:00 CEST", "2026-10-25T01:30:00+02:00|01:30 CEST",
			"2026-10-25T02:00:00+02:00|02:00 CEST", "2026-10-25T02:30:00+02:00|02:30 CEST",
			"2026-10-25T02:00:00+01:00|02:00 CET", "2026-10-25T02:30:00+01:00|02:30 CET",
			"2026-10-25T03:00:00+01:00|03:00 CET", "2026-10-25T03:30:00+01:00|03:30 CET"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			loc, _ := services.LoadZone(tt.zone)
			day, _ := time.Parse(time.DateOnly, tt.date)
			// The evening before, in clinic time: the change day is the second listed.
			now := time.Date(day.Year(), day.Month(), day.Day()-1, 20, 0, 0, 0, loc)
			h := newPageServer(t, tt.zone, now)
			for _, l := range []string{"en", "fr"} {
				res, page := get(t, h, "/c/maple?date="+tt.date+"&lang="+l)
				if res.StatusCode != 200 {
					t.Fatalf("%s: %d %.300s", l, res.StatusCode, page)
				}
				var got []string
				for _, m := range timeRE.FindAllStringSubmatch(page, -1) {
					if m[2] != tt.zone {
						t.Errorf("data-zone %q, want %q", m[2], tt.zone)
					}
					got = append(got, html.UnescapeString(m[1])+"|"+m[3])
				}
				want := slices.Clone(tt.want)
				for m := 8 * 60; m < 12*60; m += 30 { // the morning period, away from the change
					lt := time.Date(day.Year(), day.Month(), day.Day(), m/60, m%60, 0, 0, loc)
					want = append(want, lt.Format(time.RFC3339)+"|"+lt.Format("15:04 MST"))
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s: slots\n%s\nwant\n%s", l, strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				link := regexp.MustCompile(`<a href="\?date=` + tt.date + `[^"]*" aria-current="date" class="selected">([^<]+) <small>`).FindStringSubmatch(page)
				if link == nil || link[1] != tt.dayLabel[l] {
					t.Errorf("%s: selected day link %q, want %q with aria-current", l, link, tt.dayLabel[l])
				}
				if n := strings.Count(page, `aria-current="date"`); n != 1 {
					t.Errorf("%s: %d days marked current, want 1", l, n)
				}
				// Every slot links to its request form by an ID that parses back to its instant.
				for _, m := range regexp.MustCompile(`request\?slot=([a-z0-9_-]+T\d{4}Z)">`+`<time datetime="([^"]+)"`).FindAllStringSubmatch(page, -1) {
					_, start, err := services.ParseSlotID(m[1])
					at, _ := time.Parse(time.RFC3339, html.UnescapeString(m[2]))
					if err != nil || !start.Equal(at) {
						t.Errorf("slot %s is shown at %s", m[1], m[2])
					}
				}
			}
		})
	}
}

// TestRequestForm_SlotLabel: the form names the slot in the page's language,
// with the clinic's zone abbreviation, in a <time> carrying its instant.
func TestRequestForm_SlotLabel(t *testing.T) {
	loc, _ := services.LoadZone("Europe/Paris")
	h := newPageServer(t, "Europe/Paris", time.Date(2026, 10, 24, 20, 0, 0, 0, loc))
	id := services.SlotID("dr-lee", time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC)) // 02:30 CET, the second one
	for l, want := range map[string]string{
		"en": `<time datetime="2026-10-25T02:30:00&#43;01:00" data-zone="Europe/Paris">Sun 25 Oct 2026 02:30 CET</time> with Dr Lee`,
		"fr": `<time datetime="2026-10-25T02:30:00&#43;01:00" data-zone="Europe/Paris">dim. 25 oct. 2026 02:30 CET</time> avec Dr Lee`,
	} {
		res, page := get(t, h, "/c/maple/request?slot="+id+"&lang="+l)
		if res.StatusCode != 200 || !strings.Contains(page, want) {
			t.Errorf("%s: %d, page lacks %q: %.2000s", l, res.StatusCode, want, page)
		}
	}
}

// TestRequestForm_Errors: a refused form lists its errors in a summary whose
// links lead to the fields, in the page's language, and keeps what was typed.
func TestRequestForm_Errors(t *testing.T) {
	loc, _ := services.LoadZone("America/Toronto")
	now := time.Date(2026, 3, 2, 7, 0, 0, 0, loc)
	h := newPageServer(t, "America/Toronto", now)
	slot := services.SlotID("dr-lee", time.Date(2026, 3, 2, 9, 0, 0, 0, loc))
	res, _ := get(t, h, "/c/maple/request?slot="+slot)
	if res.StatusCode != 200 {
		t.Fatalf("form: %d", res.StatusCode)
	}
	var csrf *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "_csrf" {
			csrf = c
		}
	}
	for _, tt := range []struct {
		lang  string
		links []string
	}{
		{"en", []string{`<a href="#birth_date">Enter your date of birth as a date YYYY-MM-DD.</a>`,
			`<a href="#email">Your email must be an address like name@example.org.</a>`,
			`<a href="#consent">Your consent is required to send your details to the clinic.</a>`}},
		{"fr", []string{`<a href="#birth_date">Indiquez votre date de naissance au format AAAA-MM-JJ.</a>`,
			`<a href="#email">Votre adresse e-mail doit être de la forme nom@exemple.fr.</a>`,
			`<a href="#consent">Votre accord est nécessaire pour transmettre vos coordonnées à la clinique.</a>`}},
	} {
		form := url.Values{"_csrf": {csrf.Value}, "slot_id": {slot}, "name": {"Kim"}, "phone": {"4165550100"}, "email": {"nope"}}
		r := httptest.NewRequest("POST", "/c/maple/request", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(csrf)
		r.AddCookie(&http.Cookie{Name: "lang", Value: tt.lang})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		page := w.Body.String()
		if w.Code != 422 {
			t.Fatalf("%s: %d, want 422", tt.lang, w.Code)
		}
		if cc := w.Header().Get("Cache-Control"); cc != "no-store" { // it carries the patient's details
			t.Errorf("%s: the re-rendered form's Cache-Control is %q, want no-store", tt.lang, cc)
		}
		i := strings.Index(page, `id="error-summary"`)
		if i < 0 {
			t.Fatalf("%s: no error summary: %.2000s", tt.lang, page)
		}
		last := i
		for _, l := range tt.links {
			j := strings.Index(page, l)
			if j < last {
				t.Errorf("%s: summary lacks %q in form order", tt.lang, l)
			}
			last = j
		}
		for _, want := range []string{`value="Kim"`, `aria-describedby="email-err"`, `aria-invalid="true"`,
			`<html lang="` + tt.lang + `">`, `hreflang="en" lang="en"`, "?lang=fr&amp;slot=" + slot} {
			if !strings.Contains(page, want) {
				t.Errorf("%s: page lacks %q", tt.lang, want)
			}
		}
	}
}

// TestPages_NoStore: no page is kept by a cache, static files are; the
// API's cancel takes JSON only, so a cross-site form cannot post it.
func TestPages_NoStore(t *testing.T) {
	now := time.Date(2026, 3, 2, 7, 0, 0, 0, time.UTC)
	h := newPageServer(t, "America/Toronto", now)
	for _, path := range []string{"/", "/c/maple", "/c/maple/request", "/r/maple_" + strings.Repeat("ab", 16)} {
		if res, _ := get(t, h, path); res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: %d, Cache-Control %q, want no-store", path, res.StatusCode, res.Header.Get("Cache-Control"))
		}
	}
	if res, _ := get(t, h, "/static/style.css"); res.StatusCode != 200 || res.Header.Get("Cache-Control") == "no-store" {
		t.Errorf("static file: %d, Cache-Control %q, want cacheable", res.StatusCode, res.Header.Get("Cache-Control"))
	}
	r := httptest.NewRequest("POST", "/api/v1/requests/maple_"+strings.Repeat("ab", 16)+"/cancel", strings.NewReader("x=1"))
	r.Header.Set("Content-Type", "text/plain")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusUnsupportedMediaType {
		t.Errorf("cancel as text/plain: %d, want 415", w.Code)
	}
}
