package web

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nkeys"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// The two ways a patient's details enter the relay, fuzzed through the real
// handler (middleware, decoding, Booker, error table, templates) with
// in-memory ports: whatever the body, the answer is never a 5xx, and a
// request that reaches the clinic is within the limits Validate documents.

var fuzzNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fuzzBodyLimit is the default body limit, 64 KiB as docs/openapi.yaml says.
const fuzzBodyLimit = 64 << 10

// fuzzBody is a valid API body; the form seeds say the same in form encoding.
const fuzzBody = `{"slot_id":"dr-lee_20260302T1430Z","name":"Ada Lovelace","birth_date":"1990-04-01",` +
	`"phone":"+1 (416) 555-0100","email":"ada@example.org","reason":"checkup"}`

func FuzzAPIRequestCreate(f *testing.F) {
	f.Add([]byte(fuzzBody))
	f.Add([]byte(`{"slot_id":"dr-lee_20260302T1430Z","name":"Ada","birth_date":"1990-04-01","phone":"4165550100","email":"ada@example.org","consent":false}`))
	f.Add([]byte(`{"name":"` + strings.Repeat("é", 121) + `"}`))
	f.Add([]byte(`{"slot_id":"dr-lee_20260302T1430Z"} trailing`))
	f.Add([]byte(`{"name":{"nested":[1,2,{"a":null}]}}`))
	f.Add([]byte("{\"name\":\"\xff\xfe\"}"))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Add([]byte(`{"consent":"yes"}`))
	// The honeypot filled: answered as accepted, nothing sent.
	f.Add([]byte(strings.Replace(fuzzBody, `{`, `{"website":"http://spam.example",`, 1)))
	f.Add(bytes.Repeat([]byte(" "), fuzzBodyLimit))   // at the limit: empty, 400
	f.Add(bytes.Repeat([]byte(" "), fuzzBodyLimit+1)) // over it: 413
	h := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		h.reset()
		r := httptest.NewRequest(http.MethodPost, "/api/v1/clinics/maple/requests", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.srv.Handler().ServeHTTP(w, r)

		if w.Code >= 500 {
			t.Fatalf("status %d for body %q: %s", w.Code, body, w.Body)
		}
		// The handler answers what the decoder says: 413 over the limit, the
		// decoder's own 400 when it fails, and otherwise the Booker decides.
		_, _, derr := decodeAPIRequest(bytes.NewReader(body))
		switch {
		case len(body) > fuzzBodyLimit:
			if w.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d for a %d-byte body, want 413", w.Code, len(body))
			}
		case derr != nil:
			if code, _, _ := classify(derr); code != http.StatusBadRequest || w.Code != code {
				t.Fatalf("decode error %v: classify %d, handler %d, want both 400", derr, code, w.Code)
			}
		case w.Code != http.StatusCreated && w.Code != http.StatusConflict && w.Code != http.StatusUnprocessableEntity:
			t.Fatalf("status %d for a decodable body, want 201, 409 or 422: %s", w.Code, w.Body)
		}

		if w.Code == http.StatusCreated {
			var out map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
				t.Fatalf("201 body %q: %v", w.Body, err)
			}
			if _, _, err := services.ParseStatusToken(out["token"]); err != nil {
				t.Fatalf("201 token %q does not parse: %v", out["token"], err)
			}
			if h.trapped(t, jsonHoneypot(body)) {
				return
			}
			h.checkAccepted(t)
			return
		}
		var e apiError
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
			t.Fatalf("status %d body %q is not an API error (%v)", w.Code, w.Body, err)
		}
		if w.Code == http.StatusUnprocessableEntity && len(e.Fields) == 0 {
			t.Fatalf("422 names no field: %s", w.Body)
		}
		h.checkRefused(t)
	})
}

func FuzzRequestCreate(f *testing.F) {
	const form = "application/x-www-form-urlencoded"
	const multi = "multipart/form-data; boundary=XYZ"
	f.Add(form, []byte("slot_id=dr-lee_20260302T1430Z&name=Ada+Lovelace&birth_date=1990-04-01"+
		"&phone=%2B1+%28416%29+555-0100&email=ada%40example.org&reason=checkup&consent=yes"))
	f.Add(form, []byte("slot_id=dr-lee_20260302T1430Z&name=Ada&birth_date=1990-04-01&phone=4165550100&email=ada%40example.org&consent=on"))
	f.Add(form, []byte("name=%ff%fe&reason=a%00b&consent=yes"))
	f.Add(form, []byte("name=%zz;consent=yes"))
	f.Add(form, []byte("name="+strings.Repeat("x", 5000)))
	f.Add(form, []byte(""))
	f.Add(form, []byte("slot_id=dr-lee_20260302T1430Z&name=Ada&birth_date=1990-04-01&phone=4165550100&email=ada%40example.org"+
		"&consent=yes&website=http%3A%2F%2Fspam.example")) // honeypot
	f.Add(multi, []byte("--XYZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nAda Lovelace\r\n"+
		"--XYZ\r\nContent-Disposition: form-data; name=\"consent\"\r\n\r\nyes\r\n--XYZ--\r\n"))
	f.Add(multi, []byte("--XYZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nunterminated"))
	f.Add("text/plain", []byte("name=Ada"))
	f.Add("multipart/form-data", []byte("no boundary"))
	h := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		h.reset()
		r := httptest.NewRequest(http.MethodPost, "/c/maple/request", bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		r.Header.Set("Sec-Fetch-Site", "same-origin") // a browser's own form post passes CSRF
		w := httptest.NewRecorder()
		h.srv.Handler().ServeHTTP(w, r)

		switch {
		case w.Code >= 500:
			t.Fatalf("status %d for %q body %q: %s", w.Code, contentType, body, w.Body)
		case w.Code == http.StatusSeeOther:
			tok, ok := strings.CutPrefix(w.Header().Get("Location"), "/r/")
			if _, _, err := services.ParseStatusToken(tok); !ok || err != nil {
				t.Fatalf("303 to %q, want /r/<status token>", w.Header().Get("Location"))
			}
			if !h.trapped(t, formHoneypot(contentType, body)) {
				h.checkAccepted(t)
			}
		case w.Code < 400:
			t.Fatalf("status %d, want 303 or 4xx", w.Code)
		default:
			if !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
				t.Fatalf("status %d answered %q, want a page", w.Code, w.Header().Get("Content-Type"))
			}
			h.checkRefused(t)
		}
	})
}

// fuzzServer is a web server over in-memory ports that remembers what the
// last request sent to the clinic and logged.
type fuzzServer struct {
	srv *Server
	mu  sync.Mutex
	out []services.Request
	log []slog.Record
}

func newFuzzServer(tb testing.TB) *fuzzServer {
	tb.Helper()
	h := &fuzzServer{}
	booker := &services.Booker{Holds: fuzzHolds{}, Outbox: h, Statuses: fuzzStatuses{}, Directory: fuzzCatalog{},
		HoldTTL: time.Minute, Now: func() time.Time { return fuzzNow }}
	srv, err := New(Config{Booker: booker, Catalog: fuzzCatalog{}, Logger: slog.New(h), Now: func() time.Time { return fuzzNow },
		Limits: Limits{Off: true}})
	if err != nil {
		tb.Fatal(err)
	}
	h.srv = srv
	return h
}

func (h *fuzzServer) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.out, h.log = nil, nil
}

// PublishRequest is the Outbox: it opens the sealed request as the clinic
// would, and keeps it.
func (h *fuzzServer) PublishRequest(_ context.Context, q services.Queued) error {
	req, err := fuzzKey.Open(q.Sealed)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.out = append(h.out, req)
	return nil
}

// fuzzKey opens what is sealed to the clinic's curve key.
var fuzzKey = func() *services.Opener {
	kp, _ := nkeys.CreateCurveKeys()
	o, _ := services.NewOpener(kp)
	return o
}()

// trapped reports whether an accepted-looking answer was the honeypot's:
// nothing sent to the clinic, one line logged, and a body that fills it.
func (h *fuzzServer) trapped(t *testing.T, filled bool) bool {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.out) != 0 {
		return false
	}
	if !filled || len(h.log) != 1 || !strings.HasPrefix(h.log[0].Message, "honeypot") {
		t.Fatalf("accepted, yet nothing sent; log %v", h.log)
	}
	return true
}

// jsonHoneypot reports whether an API body fills the honeypot as the API
// reads it (its first JSON value): keys match without regard to case
// ("websitE") and may be escaped.
func jsonHoneypot(body []byte) bool {
	var hp struct {
		Website string `json:"website"`
	}
	return json.NewDecoder(bytes.NewReader(body)).Decode(&hp) == nil && hp.Website != ""
}

// formHoneypot reports whether a form body fills the honeypot as the page
// reads it.
func formHoneypot(contentType string, body []byte) bool {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	return r.FormValue(honeypotField) != ""
}

// checkRefused fails if a refused request reached the clinic or the log.
func (h *fuzzServer) checkRefused(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.out) != 0 || len(h.log) != 0 {
		t.Fatalf("refused, yet %d request(s) sent and %d line(s) logged", len(h.out), len(h.log))
	}
}

// checkAccepted fails unless exactly one request reached the clinic, within
// the limits Validate documents (checked here independently of Validate), and
// the log names it by IDs only.
func (h *fuzzServer) checkAccepted(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.out) != 1 {
		t.Fatalf("accepted, and %d requests sent, want 1", len(h.out))
	}
	req := h.out[0]
	if err := subjects.ValidRequestID(req.ID); err != nil || req.ClinicID != "maple" || !req.CreatedAt.Equal(fuzzNow) {
		t.Errorf("routing: id %q clinic %q created %v", req.ID, req.ClinicID, req.CreatedAt)
	}
	if _, start, err := services.ParseSlotID(req.SlotID); err != nil || !start.After(fuzzNow) {
		t.Errorf("slot_id %q is not a future slot (%v)", req.SlotID, err)
	}
	if n := req.Name; n == "" || n != strings.TrimSpace(n) || !printable(n, 120, "") {
		t.Errorf("name %q is not 1-120 printable characters, trimmed", n)
	}
	if b, err := time.Parse(time.DateOnly, req.BirthDate); err != nil || b.After(fuzzNow) || b.Before(fuzzNow.AddDate(-130, 0, 0)) {
		t.Errorf("birth_date %q is not a date in the past 130 years", req.BirthDate)
	}
	digits := 0
	for _, c := range req.Phone {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case !strings.ContainsRune("+-() .", c):
			t.Errorf("phone %q has %q", req.Phone, c)
		}
	}
	if digits < 7 || digits > 15 || req.Phone != strings.TrimSpace(req.Phone) {
		t.Errorf("phone %q has %d digits, want 7-15, trimmed", req.Phone, digits)
	}
	local, domain, ok := strings.Cut(req.Email, "@")
	if !ok || local == "" || domain == "" || len(req.Email) > 254 || !printable(req.Email, 254, "") ||
		strings.ContainsFunc(req.Email, unicode.IsSpace) {
		t.Errorf("email %q is not an address of at most 254 bytes", req.Email)
	}
	if !printable(req.Reason, 1000, "\r\n") {
		t.Errorf("reason %q is not at most 1000 printable characters", req.Reason)
	}
	if !req.Consent {
		t.Error("accepted without consent")
	}
	if len(h.log) != 1 {
		t.Fatalf("accepted, and %d lines logged, want 1", len(h.log))
	}
	h.log[0].Attrs(func(a slog.Attr) bool {
		if want := map[string]string{"clinic_id": "maple", "request_id": req.ID}[a.Key]; a.Value.String() != want {
			t.Errorf("log attribute %s=%q; only clinic_id and request_id may be logged", a.Key, a.Value)
		}
		return true
	})
}

// printable reports whether s is valid UTF-8 of at most n characters with no
// control character other than those in allow.
func printable(s string, n int, allow string) bool {
	return utf8.ValidString(s) && utf8.RuneCountInString(s) <= n &&
		!strings.ContainsFunc(s, func(c rune) bool { return unicode.IsControl(c) && !strings.ContainsRune(allow, c) })
}

// The fuzzServer is also the log: a slog.Handler keeping each record.

func (h *fuzzServer) Enabled(context.Context, slog.Level) bool { return true }
func (h *fuzzServer) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *fuzzServer) WithGroup(string) slog.Handler            { return h }
func (h *fuzzServer) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log = append(h.log, r)
	return nil
}

// fuzzCatalog knows one clinic, maple, where every well-formed future slot is free.
type fuzzCatalog struct{}

func (fuzzCatalog) Clinic(id string) (services.Clinic, bool) {
	return services.Clinic{ID: "maple", Name: "Maple Clinic", TimeZone: "America/Toronto"}, id == "maple"
}

func (fuzzCatalog) FreeSlot(clinic, id string) (services.Slot, bool) {
	p, start, err := services.ParseSlotID(id)
	if clinic != "maple" || err != nil || !start.After(fuzzNow) {
		return services.Slot{}, false
	}
	return services.Slot{ID: id, ProviderID: p, Start: start, End: start.Add(30 * time.Minute)}, true
}

func (c fuzzCatalog) NextFree(clinic string, n int) []services.Slot {
	s, _ := c.FreeSlot(clinic, services.SlotID("dr-lee", fuzzNow.Add(24*time.Hour)))
	return []services.Slot{s}[:min(n, 1)]
}

func (fuzzCatalog) Clinics() []services.Clinic                   { return nil }
func (fuzzCatalog) Version(string) uint64                        { return 0 }
func (fuzzCatalog) SealKey(string) (string, bool)                { return fuzzKey.PublicKey(), true }
func (fuzzCatalog) Policy(string, string) services.BookingPolicy { return services.BookingPolicy{} }
func (fuzzCatalog) Providers(string) []services.Provider {
	return []services.Provider{{ID: "dr-lee", Name: "Dr Lee"}}
}
func (fuzzCatalog) LastSeen(string) services.Heartbeat                 { return services.Heartbeat{At: fuzzNow} }
func (fuzzCatalog) Slots(string, time.Time, time.Time) []services.Slot { return nil }

type fuzzHolds struct{}

func (fuzzHolds) Hold(context.Context, string, string, string, time.Duration) (uint64, error) {
	return 1, nil
}
func (fuzzHolds) Release(context.Context, string, string, string) error { return nil }

type fuzzStatuses struct{}

func (fuzzStatuses) PutStatus(context.Context, services.Status) (uint64, error) { return 1, nil }
func (fuzzStatuses) GetStatus(context.Context, string, string) (services.Status, error) {
	return services.Status{}, services.Errorf(services.ENotFound, "no such request")
}
func (fuzzStatuses) DeleteStatus(context.Context, string, string) error { return nil }
