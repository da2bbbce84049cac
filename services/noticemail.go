package services

import (
	"fmt"
	"strings"
	"time"
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
	t := noticeTexts[lang][m.Notice.Kind]
	loc := m.Clinic.Location()
	when := FormatWhen(m.Start, loc, lang)
	body := fmt.Sprintf(t.body, m.Clinic.Name, when)
	if m.Notice.Kind == NoticeProposed && !m.Proposed.IsZero() {
		body += fmt.Sprintf(proposedLine[lang], FormatWhen(m.Proposed, loc, lang))
	}
	body += "\n\n" + fmt.Sprintf(linkLine[lang], m.Link()) + "\n\n" + footer[lang] + "\n"
	e := Email{From: m.From, To: m.Contact.Email, Subject: fmt.Sprintf(t.subject, m.Clinic.Name), Text: body,
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

type noticeText struct{ subject, body string }

// noticeTexts: subject (%s the clinic) and body (%s the clinic, %s the time).
var noticeTexts = map[string]map[string]noticeText{
	"en": {
		NoticeReceived: {"Your request to %s was received",
			"We sent your request for an appointment at %s on %s to the clinic. We will email you when the clinic answers."},
		NoticeBooked: {"Your appointment at %s is confirmed",
			"Your appointment at %s on %s is confirmed. A calendar file is attached."},
		NoticeDeclined: {"Your request to %s was not accepted",
			"%s could not accept your request for %s."},
		NoticeProposed: {"%s proposed another time",
			"%s cannot see you on %s and proposed another time."},
		NoticeCancelled: {"Your appointment at %s is cancelled",
			"Your request for an appointment at %s on %s is cancelled."},
		NoticeReminder: {"Reminder: your appointment at %s",
			"This is a reminder of your appointment at %s on %s."},
	},
	"fr": {
		NoticeReceived: {"Votre demande à %s a été reçue",
			"Votre demande de rendez-vous à %s pour le %s a été transmise à la clinique. Nous vous écrirons dès qu'elle aura répondu."},
		NoticeBooked: {"Votre rendez-vous à %s est confirmé",
			"Votre rendez-vous à %s le %s est confirmé. Un fichier de calendrier est joint."},
		NoticeDeclined: {"Votre demande à %s n'a pas été acceptée",
			"%s n'a pas pu accepter votre demande pour le %s."},
		NoticeProposed: {"%s vous propose un autre moment",
			"%s ne peut pas vous recevoir le %s et vous propose un autre moment."},
		NoticeCancelled: {"Votre rendez-vous à %s est annulé",
			"Votre demande de rendez-vous à %s le %s est annulée."},
		NoticeReminder: {"Rappel : votre rendez-vous à %s",
			"Ceci est un rappel de votre rendez-vous à %s le %s."},
	},
}

var (
	proposedLine = map[string]string{"en": " The time proposed: %s.", "fr": " Le moment proposé : %s."}
	linkLine     = map[string]string{"en": "See your request, and change or cancel it: %s",
		"fr": "Voyez votre demande, modifiez-la ou annulez-la : %s"}
	footer = map[string]string{"en": "This message was sent automatically; please do not reply.",
		"fr": "Ce message a été envoyé automatiquement ; merci de ne pas y répondre."}
)

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
