package services

import (
	"fmt"
	"strings"
	"time"

	"github.com/clinicrelay/clinicrelay/internal/catalog"
)

// NoticeEmail is everything a notice's email says. It carries no reason
// and no clinical text: the clinic's name, the time in the clinic's zone and
// the link to the status page, where the patient sees the rest.
type NoticeEmail struct {
	Notice     Notice
	Contact    Contact
	Clinic     Clinic
	Start, End time.Time // the notice's slot
	// Proposed is the time the clinic proposed instead (NoticeProposed).
	Proposed time.Time
	BaseURL  string // the web front's public URL, without a final slash
	From     string // the sender's address
	Now      time.Time
}

// Link is the patient's status page.
func (m NoticeEmail) Link() string {
	return strings.TrimRight(m.BaseURL, "/") + "/r/" + m.Contact.Token
}

// Compose builds the email in the patient's language; a booked notice has
// the calendar file attached.
func (m NoticeEmail) Compose() Email {
	lang := Lang(m.Contact.Lang)
	loc := m.Clinic.Location()
	when := FormatWhen(m.Start, loc, lang)
	kind := "notice." + m.Notice.Kind
	body := catalog.T(lang, kind+".body", m.Clinic.Name, when)
	if m.Notice.Kind == NoticeProposed && !m.Proposed.IsZero() {
		body += catalog.T(lang, "notice.proposed_line", FormatWhen(m.Proposed, loc, lang))
	}
	body += "\n\n" + catalog.T(lang, "notice.link", m.Link()) + "\n\n" + catalog.T(lang, "notice.footer") + "\n"
	e := Email{From: m.From, To: m.Contact.Email, Subject: catalog.T(lang, kind+".subject", m.Clinic.Name), Text: body,
		MessageID: m.Notice.ID() + "@" + domainOf(m.From), Date: m.Now}
	if m.Notice.Kind == NoticeBooked {
		a := Appointment{RequestID: m.Notice.RequestID, ClinicName: m.Clinic.Name, Zone: loc,
			Start: m.Start, End: m.End, Link: m.Link(), Stamp: m.Now}
		e.Attachment = &Attachment{Name: "appointment.ics", ContentType: "text/calendar; charset=utf-8; method=PUBLISH",
			Data: a.ICS()}
	}
	return e
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.Trim(addr[i+1:], "> ")
	}
	return "clinicrelay.invalid"
}

var (
	frDays   = []string{"dimanche", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi"}
	frMonths = []string{"janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
		"octobre", "novembre", "décembre"}
)

// FormatWhen is t in the clinic's zone, in words of lang, with the zone's
// abbreviation: "Monday, March 2, 2026 at 9:30 AM EST" or
// "lundi 2 mars 2026 à 9 h 30 (EST)".
func FormatWhen(t time.Time, loc *time.Location, lang string) string {
	l := t.In(loc)
	zone, _ := l.Zone()
	if Lang(lang) == "fr" {
		return fmt.Sprintf("%s %d %s %d à %d h %02d (%s)", frDays[l.Weekday()], l.Day(), frMonths[l.Month()-1],
			l.Year(), l.Hour(), l.Minute(), zone)
	}
	return l.Format("Monday, January 2, 2006 at 3:04 PM ") + zone
}
