package web

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/text/language"

	"github.com/clinicrelay/clinicrelay/internal/catalog"
	"github.com/clinicrelay/clinicrelay/services"
)

// The patient pages speak the languages of the message catalogue
// (internal/catalog); docs/i18n.md says how to add a string or a language.
// The JSON API stays English.

// languages lists the site's languages, the default first.
var languages = catalog.Languages

// messages is each language's texts, read only (tests look keys up in it).
var messages = catalog.All()

var langMatcher = func() language.Matcher {
	tags := make([]language.Tag, len(languages))
	for i, l := range languages {
		tags[i] = language.MustParse(l)
	}
	return language.NewMatcher(tags)
}()

// tr translates key into lang, formatting args into it (catalog.T).
func tr(lang, key string, args ...any) string { return catalog.T(lang, key, args...) }

// trn translates key+".one" or key+".other" by n, passing n as the first argument.
func trn(lang, key string, n int, args ...any) string { return catalog.N(lang, key, n, args...) }

// langKey is where the language middleware leaves its choice in the context.
const langKey = "lang"

// lang is the language chosen for this request: "en" or "fr".
func lang(c echo.Context) string {
	if c != nil {
		if l, ok := c.Get(langKey).(string); ok {
			return l
		}
	}
	return languages[0]
}

// t translates key into the language of this request.
func t(c echo.Context, key string, args ...any) string { return tr(lang(c), key, args...) }

// supported returns l when the site speaks it.
func supported(l string) (string, bool) {
	for _, s := range languages {
		if s == l {
			return s, true
		}
	}
	return "", false
}

// language picks the request's language: a ?lang= switch (remembered in the
// lang cookie), else the cookie, else Accept-Language, else English.
func (s *Server) language(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		l, ok := supported(c.QueryParam("lang"))
		if ok {
			c.SetCookie(&http.Cookie{Name: "lang", Value: l, Path: "/", MaxAge: 365 * 24 * 3600, HttpOnly: true,
				Secure: s.cfg.SecureCookies, SameSite: http.SameSiteLaxMode})
		} else if ck, err := c.Cookie("lang"); err == nil {
			l, ok = supported(ck.Value)
		}
		if !ok {
			tags, _, _ := language.ParseAcceptLanguage(c.Request().Header.Get("Accept-Language"))
			_, i, _ := langMatcher.Match(tags...)
			l = languages[i]
		}
		c.Set(langKey, l)
		h := c.Response().Header()
		h.Add("Vary", "Accept-Language")
		h.Add("Vary", "Cookie")
		// One Vary header, each name once, whatever else added one (the
		// CSRF middleware adds Cookie again).
		c.Response().Before(func() { mergeVary(h) })
		if !strings.HasPrefix(c.Request().URL.Path, "/api/") {
			h.Set("Content-Language", l)
		}
		return next(c)
	}
}

// langLink is one entry of the layout's language switch.
type langLink struct {
	Lang, Name, URL string
	Current         bool
}

// langLinks links the page at u in every language; the page's own query
// is kept, so a switch stays on the same clinic, date or slot.
func langLinks(current string, u *url.URL) []langLink {
	out := make([]langLink, len(languages))
	for i, l := range languages {
		q := u.Query()
		q.Set("lang", l)
		out[i] = langLink{Lang: l, Name: tr(l, "lang."+l), Current: l == current,
			URL: path.Clean("/"+u.Path) + "?" + q.Encode()}
	}
	return out
}

// ago says, in lang, how long before now t was, for "last synced".
func ago(lang string, now, t time.Time) string {
	if t.IsZero() {
		return tr(lang, "ago.never")
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return tr(lang, "ago.now")
	case d < time.Hour:
		return tr(lang, "ago.min", int(d.Minutes()))
	case d < 48*time.Hour:
		return tr(lang, "ago.hours", int(d.Hours()))
	default:
		return tr(lang, "ago.days", int(d.Hours()/24))
	}
}

// stateIn is the sentence, in lang, for a request in state: "received",
// "delivered", "booked", "declined", "proposed", "expired" or "cancelled".
func stateIn(lang string, state services.State) string { return tr(lang, "state."+string(state)) }

// stateText is the English sentence of each state, from the catalog.
// Pages should use stateIn(lang(c), state).
var stateText = func() map[string]string {
	m := map[string]string{}
	for k, v := range messages[languages[0]] {
		if st, ok := strings.CutPrefix(k, "state."); ok {
			m[st] = v
		}
	}
	return m
}()

// formatDay labels a date in lang: "Mon 2 Mar", "lun. 2 mars".
func formatDay(lang string, d time.Time) string {
	return tr(lang, "date.day", tr(lang, fmt.Sprint("day.", int(d.Weekday()))), d.Day(),
		tr(lang, fmt.Sprint("month.", int(d.Month()))))
}

// formatSlot labels an instant in lang, in clinic time with the zone's
// abbreviation and a 24-hour clock: "Mon 2 Mar 2026 09:00 EST",
// "lun. 2 mars 2026 09:00 EST".
func formatSlot(lang string, t time.Time, loc *time.Location) string {
	t = t.In(loc)
	return tr(lang, "date.slot", tr(lang, fmt.Sprint("day.", int(t.Weekday()))), t.Day(),
		tr(lang, fmt.Sprint("month.", int(t.Month()))), t.Year(), t.Format("15:04 MST"))
}

// fieldError is a field's message in lang, by its code in the catalogue
// (services.Error.FieldKeys); a field without one says "check this field".
func fieldError(lang, key string, args ...any) string {
	return keyText(lang, key, tr(lang, "field.other"), args...)
}

// keyText is the catalogue's text under key in lang, or fallback when the
// catalogue has no such key (or key is "").
func keyText(lang, key, fallback string, args ...any) string {
	if key == "" || !catalog.Has(key) {
		return fallback
	}
	return tr(lang, key, args...)
}

// errorKeys maps the messages of errors that are not the domain's (Echo's
// own, which carry no code) to catalog keys; a domain error has its code
// (services.Error.Key).
var errorKeys = map[string]string{
	"missing csrf token in the form parameter":        "error.csrf",
	"invalid csrf token":                              "error.csrf",
	"something went wrong on our side":                "error.internal",
	http.StatusText(http.StatusNotFound):              "error.not_found",
	http.StatusText(http.StatusMethodNotAllowed):      "error.method",
	http.StatusText(http.StatusTooManyRequests):       "error.too_many",
	http.StatusText(http.StatusRequestEntityTooLarge): "error.too_large",
	http.StatusText(http.StatusServiceUnavailable):    "error.unavailable",
}

// errorText is an error page's message in lang: by its code (key), else
// by errorKeys; anything else becomes a general one, never English on a
// French page.
func errorText(lang, key, msg string, args ...any) string {
	if k, ok := errorKeys[msg]; ok && key == "" {
		key = k
	}
	return keyText(lang, key, tr(lang, "error.other"), args...)
}

// errorTitle is the heading of an error page for an HTTP status.
func errorTitle(lang string, code int) string {
	if k := fmt.Sprint("error.title.", code); messages[lang][k] != "" {
		return tr(lang, k)
	}
	return tr(lang, "error.title", code)
}

// mergeVary makes h's Vary headers one, each name once, in order.
func mergeVary(h http.Header) {
	var names []string
	for _, v := range h.Values("Vary") {
		for n := range strings.SplitSeq(v, ",") {
			if n = strings.TrimSpace(n); n != "" && !slices.ContainsFunc(names, func(m string) bool { return strings.EqualFold(m, n) }) {
				names = append(names, n)
			}
		}
	}
	if len(names) > 0 {
		h.Set("Vary", strings.Join(names, ", "))
	}
}
