package services_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	ics "github.com/arran4/golang-ical"

	"github.com/clinicrelay/clinicrelay/services"
)

var maple = services.Clinic{ID: "maple", Name: "Maple Clinic", TimeZone: "America/Toronto"}

// parsedEmail is a rendered email read back with the standard library.
type parsedEmail struct {
	hdr  mail.Header
	text string
	ics  []byte
}

func b64Reader(b []byte) io.Reader {
	return base64.NewDecoder(base64.StdEncoding, bytes.NewReader(bytes.ReplaceAll(b, []byte("\r\n"), nil)))
}

func parseEmail(t *testing.T, raw []byte) parsedEmail {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatal("a line ends without CR")
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	p := parsedEmail{hdr: m.Header}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	if mt == "text/plain" {
		b, _ := io.ReadAll(quotedprintable.NewReader(m.Body))
		p.text = string(b)
		return p
	}
	if mt != "multipart/mixed" {
		t.Fatalf("content type %q", mt)
	}
	r := multipart.NewReader(m.Body, params["boundary"])
	for {
		part, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(part) // multipart decodes quoted-printable itself
		switch ct := part.Header.Get("Content-Type"); {
		case strings.HasPrefix(ct, "text/plain"):
			p.text = string(b)
		case strings.HasPrefix(ct, "text/calendar"):
			if part.FileName() != "appointment.ics" || part.Header.Get("Content-Transfer-Encoding") != "base64" {
				t.Errorf("attachment %q, encoding %q", part.FileName(), part.Header.Get("Content-Transfer-Encoding"))
			}
			dec, err := io.ReadAll(b64Reader(b))
			if err != nil {
				t.Fatal(err)
			}
			p.ics = dec
		default:
			t.Errorf("unexpected part %q", ct)
		}
	}
	return p
}

func TestNoticeEmail_Compose(t *testing.T) {
	start := time.Date(2026, 3, 10, 13, 30, 0, 0, time.UTC) // 9:30 in Toronto (EDT)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	subjects := map[string][2]string{ // kind → en, fr
		services.NoticeReceived:  {"Your request to Maple Clinic was received", "Votre demande à Maple Clinic a été reçue"},
		services.NoticeBooked:    {"Your appointment at Maple Clinic is confirmed", "Votre rendez-vous à Maple Clinic est confirmé"},
		services.NoticeDeclined:  {"Your request to Maple Clinic was not accepted", "Votre demande à Maple Clinic n'a pas été acceptée"},
		services.NoticeProposed:  {"Maple Clinic proposed another time", "Maple Clinic vous propose un autre moment"},
		services.NoticeCancelled: {"Your appointment at Maple Clinic is cancelled", "Votre rendez-vous à Maple Clinic est annulé"},
		services.NoticeReminder:  {"Reminder: your appointment at Maple Clinic", "Rappel : votre rendez-vous à Maple Clinic"},
	}
	whens := map[string]string{"en": "Tuesday, March 10, 2026 at 9:30 AM EDT", "fr": "mardi 10 mars 2026 à 9 h 30 (EDT)"}
	for kind, subj := range subjects {
		for i, lang := range []string{"en", "fr"} {
			t.Run(kind+"/"+lang, func(t *testing.T) {
				m := services.NoticeEmail{
					Notice:  services.Notice{Kind: kind, ClinicID: "maple", RequestID: "0123456789abcdef0123456789abcdef", SlotID: "dr-lee_20260310T1330Z"},
					Contact: services.Contact{Email: "ada@example.org", Token: "maple_fedcba9876543210fedcba9876543210", Lang: lang},
					Clinic:  maple, Start: start, End: start.Add(20 * time.Minute), BaseURL: "https://book.example/",
					From: "Clinic Relay <relay@book.example>", Now: now,
				}
				if kind == services.NoticeProposed {
					m.Proposed = start.Add(48 * time.Hour)
				}
				raw, err := m.Compose().Bytes()
				if err != nil {
					t.Fatal(err)
				}
				p := parseEmail(t, raw)
				dec := new(mime.WordDecoder)
				gotSubj, _ := dec.DecodeHeader(p.hdr.Get("Subject"))
				if gotSubj != subj[i] {
					t.Errorf("Subject = %q, want %q", gotSubj, subj[i])
				}
				if p.hdr.Get("To") != "<ada@example.org>" || !strings.Contains(p.hdr.Get("From"), "<relay@book.example>") {
					t.Errorf("To %q From %q", p.hdr.Get("To"), p.hdr.Get("From"))
				}
				if d, err := p.hdr.Date(); err != nil || !d.Equal(now) {
					t.Errorf("Date = %v (%v)", d, err)
				}
				if id := p.hdr.Get("Message-ID"); id != "<"+m.Notice.ID()+"@book.example>" {
					t.Errorf("Message-ID = %q", id)
				}
				if p.hdr.Get("MIME-Version") != "1.0" {
					t.Error("no MIME-Version 1.0")
				}
				if !strings.Contains(p.text, "https://book.example/r/maple_fedcba9876543210fedcba9876543210") {
					t.Errorf("no status link in %q", p.text)
				}
				if !strings.Contains(p.text, whens[lang]) {
					t.Errorf("no %q in %q", whens[lang], p.text)
				}
				if (p.ics != nil) != (kind == services.NoticeBooked) {
					t.Errorf("calendar attached: %v", p.ics != nil)
				}
				if p.ics != nil {
					checkICS(t, p.ics, start, start.Add(20*time.Minute))
				}
			})
		}
	}
}

// TestNoticeEmail_NoReason: the email says nothing the clinic wrote, even
// when the status carries a reason; the notice has no field for one.
func TestNoticeEmail_NoReason(t *testing.T) {
	m := services.NoticeEmail{Notice: services.Notice{Kind: services.NoticeDeclined, RequestID: "0123456789abcdef0123456789abcdef"},
		Contact: services.Contact{Email: "ada@example.org", Token: "maple_x"}, Clinic: maple,
		Start: time.Now(), End: time.Now(), From: "relay@book.example", Now: time.Now()}
	raw, err := m.Compose().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"reason", "Reason", "raison"} {
		if strings.Contains(string(raw), bad) {
			t.Errorf("email mentions %q", bad)
		}
	}
}

func TestEmail_HeaderInjection(t *testing.T) {
	e := services.Email{From: "relay@book.example", To: "ada@example.org", Subject: "x\r\nBcc: eve@example.org",
		MessageID: "a@b", Date: time.Now(), Text: "hi"}
	raw, err := e.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("Bcc") != "" {
		t.Error("a subject added a header")
	}
	if _, err := (services.Email{From: "relay@book.example", To: "not an address"}).Bytes(); err == nil {
		t.Error("bad To accepted")
	}
}

// checkICS parses a calendar back with golang-ical and checks the event's
// instants, and that its VTIMEZONE gives the offset the zone has then.
func checkICS(t *testing.T, b []byte, start, end time.Time) {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(b, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("a calendar line ends without CR (RFC 5545 3.1)")
	}
	cal, err := ics.ParseCalendar(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse calendar: %v\n%s", err, b)
	}
	evs := cal.Events()
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	ev := evs[0]
	gotStart, err := ev.GetStartAt()
	if err != nil || !gotStart.Equal(start) {
		t.Errorf("DTSTART = %v (%v), want %v", gotStart, err, start)
	}
	if gotEnd, err := ev.GetEndAt(); err != nil || !gotEnd.Equal(end) {
		t.Errorf("DTEND = %v (%v), want %v", gotEnd, err, end)
	}
	if s := ev.GetProperty(ics.ComponentPropertySummary); s == nil || !strings.HasPrefix(s.Value, "Appointment at ") {
		t.Errorf("SUMMARY = %v", s)
	}
	for _, p := range []ics.ComponentProperty{ics.ComponentPropertyUniqueId, ics.ComponentPropertyDtstamp} {
		if ev.GetProperty(p) == nil {
			t.Errorf("no %s", p)
		}
	}
	tzs := cal.Timezones()
	if len(tzs) != 1 {
		t.Fatalf("%d VTIMEZONEs", len(tzs))
	}
	tzid := ev.GetProperty(ics.ComponentPropertyDtStart).ICalParameters["TZID"]
	if len(tzid) != 1 || tzs[0].GetProperty(ics.ComponentPropertyTzid).Value != tzid[0] {
		t.Fatalf("DTSTART TZID %v, VTIMEZONE %v", tzid, tzs[0].GetProperty(ics.ComponentPropertyTzid))
	}
	// The observance in force at start (the last to begin before it) must
	// have the zone's offset then.
	var off string
	var onset string
	local := ev.GetProperty(ics.ComponentPropertyDtStart).Value
	for _, c := range tzs[0].Components {
		var cb *ics.ComponentBase
		switch o := c.(type) {
		case *ics.Standard:
			cb = &o.ComponentBase
		case *ics.Daylight:
			cb = &o.ComponentBase
		default:
			continue
		}
		if on := cb.GetProperty(ics.ComponentPropertyDtStart).Value; on <= local && on > onset {
			onset, off = on, cb.GetProperty(ics.ComponentProperty(ics.PropertyTzoffsetto)).Value
		}
	}
	loc, _ := time.LoadLocation(tzid[0])
	_, want := start.In(loc).Zone()
	if wantS := start.In(loc).Format("-0700"); off != wantS {
		t.Errorf("VTIMEZONE offset at %s = %q, want %q (%d)", local, off, wantS, want)
	}
}

func TestAppointment_ICS_DST(t *testing.T) {
	for _, tt := range []struct {
		zone  string
		start time.Time
	}{
		{"America/Toronto", time.Date(2026, 3, 8, 14, 0, 0, 0, time.UTC)},  // spring-forward day, 10:00 EDT
		{"America/Toronto", time.Date(2026, 11, 1, 6, 30, 0, 0, time.UTC)}, // fall-back day, 1:30 EST (the second one)
		{"America/Toronto", time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC)}, // fall-back day, 1:30 EDT (the first one)
		{"Europe/Paris", time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)},    // 3:30 CEST, just after the change
		{"Asia/Kolkata", time.Date(2026, 6, 1, 4, 0, 0, 0, time.UTC)},      // no DST
		{"UTC", time.Date(2026, 6, 1, 4, 0, 0, 0, time.UTC)},
	} {
		loc, _ := time.LoadLocation(tt.zone)
		a := services.Appointment{RequestID: "r1", ClinicName: "Maple", Zone: loc, Start: tt.start,
			End: tt.start.Add(30 * time.Minute), Stamp: time.Now()}
		t.Run(tt.zone+"/"+tt.start.Format(time.RFC3339), func(t *testing.T) {
			b := a.ICS()
			if tt.zone == "America/Toronto" && tt.start.Month() == 11 {
				// 1:30 local happens twice on the fall-back day: written
				// in UTC, the one instant it names.
				checkICSInstant(t, b, tt.start)
				return
			}
			checkICS(t, b, tt.start, tt.start.Add(30*time.Minute))
		})
	}
}

func checkICSInstant(t *testing.T, b []byte, start time.Time) {
	t.Helper()
	cal, err := ics.ParseCalendar(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	got, err := cal.Events()[0].GetStartAt()
	if err != nil || !got.Equal(start) {
		t.Errorf("DTSTART = %v (%v), want %v\n%s", got, err, start, b)
	}
}

func TestSlotTimes(t *testing.T) {
	s1 := services.Slot{ID: "dr-lee_20260310T1330Z", ProviderID: "dr-lee", Start: time.Date(2026, 3, 10, 13, 30, 0, 0, time.UTC)}
	s1.End = s1.Start.Add(20 * time.Minute)
	other := services.Slot{ID: "dr-lee_20260310T1400Z", ProviderID: "dr-lee", Start: s1.End, End: s1.End.Add(20 * time.Minute)}
	for _, tt := range []struct {
		name  string
		known []services.Slot
		want  time.Duration
	}{
		{"itself", []services.Slot{s1}, 20 * time.Minute},
		{"same provider", []services.Slot{other}, 20 * time.Minute},
		{"unknown", nil, services.DefaultSlotLength},
	} {
		start, end, err := services.SlotTimes(s1.ID, tt.known)
		if err != nil || !start.Equal(s1.Start) || end.Sub(start) != tt.want {
			t.Errorf("%s: %v %v %v, want length %v", tt.name, start, end, err, tt.want)
		}
	}
}

func TestContactUntil(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if got := services.ContactUntil(now, now.Add(48*time.Hour)); !got.Equal(now.Add(72 * time.Hour)) {
		t.Errorf("until = %v", got)
	}
	if got := services.ContactUntil(now, now.AddDate(1, 0, 0)); !got.Equal(now.Add(services.StatusLifetime)) {
		t.Errorf("capped until = %v", got)
	}
}

// memContacts is the ContactKeeper port in memory.
type memContacts struct {
	mu   sync.Mutex
	kept map[string]services.Contact
}

func (m *memContacts) KeepContact(ctx context.Context, c services.Contact, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kept[c.ClinicID+"/"+c.RequestID] = c
	return ctx.Err()
}

func (m *memContacts) Forget(ctx context.Context, clinic, requestID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.kept, clinic+"/"+requestID)
	return ctx.Err()
}

// TestBooker_Request_UndoForgetsContact: the contact is kept before the
// status; a request that could not be queued (or whose status could not be
// written) leaves no address behind.
func TestBooker_Request_UndoForgetsContact(t *testing.T) {
	for _, tt := range []struct{ name, fail string }{{"Publish", "publish"}, {"Status", "status"}} {
		t.Run(tt.name, func(t *testing.T) {
			b := newBooking(t)
			contacts := &memContacts{kept: map[string]services.Contact{}}
			b.Booker.Contacts = contacts
			busy := services.Errorf(services.EUnavailable, "the booking service is busy")
			if tt.fail == "publish" {
				b.outbox.err = busy
			} else {
				b.statuses.err = busy
			}
			if _, err := b.Request(t.Context(), "maple", bookingRequest()); !errors.Is(err, busy) {
				t.Fatalf("Request() = %v, want %v", err, busy)
			}
			if len(contacts.kept) != 0 {
				t.Errorf("contacts kept after the undo: %d", len(contacts.kept))
			}
		})
	}
}

func TestNotice_Due(t *testing.T) {
	const a, b = "dr-lee_20260310T1400Z", "dr-lee_20260311T1400Z"
	st := func(state services.State, slot, proposed string) services.Status {
		return services.Status{ClinicID: "maple", RequestID: "r", State: state, SlotID: slot, ProposedSlot: proposed}
	}
	for _, tt := range []struct {
		kind, slot string
		now        services.Status
		want       bool
	}{
		{services.NoticeReceived, a, st(services.StateReceived, a, ""), true},
		{services.NoticeReceived, a, st(services.StateDelivered, a, ""), true},
		{services.NoticeReceived, a, st(services.StateReceived, b, ""), false}, // rescheduled since
		{services.NoticeReceived, a, st(services.StateBooked, a, ""), false},
		{services.NoticeBooked, a, st(services.StateBooked, a, ""), true},
		{services.NoticeBooked, a, st(services.StateBooked, b, ""), false},
		{services.NoticeCancelled, a, st(services.StateCancelled, a, ""), true},
		{services.NoticeCancelled, a, st(services.StateBooked, a, ""), false}, // the cancel was rolled back
		{services.NoticeDeclined, a, st(services.StateDeclined, a, ""), true},
		{services.NoticeProposed, b, st(services.StateProposed, a, b), true},
		{services.NoticeProposed, a, st(services.StateProposed, a, b), false},
		{services.NoticeReminder, a, st(services.StateBooked, a, ""), true},
		{services.NoticeReminder, a, st(services.StateReceived, b, ""), false},
		{services.NoticeBooked, a, st(services.StateExpired, a, ""), false},
	} {
		n := services.Notice{Kind: tt.kind, ClinicID: "maple", RequestID: "r", SlotID: tt.slot}
		if got := n.Due(tt.now); got != tt.want {
			t.Errorf("%s on %s, status %s on %s: Due() = %v, want %v", tt.kind, tt.slot, tt.now.State,
				tt.now.SlotID, got, tt.want)
		}
	}
}
