package services_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// requestNow is the clock every request test validates against.
var requestNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func validRequest() services.Request {
	return services.Request{
		SlotID:    "dr-lee_20260305T1400Z",
		Name:      "Ada Lovelace",
		BirthDate: "1990-12-10",
		Phone:     "+1 (416) 555-0199",
		Email:     "ada@example.org",
		Reason:    "Sore knee\r\nsince Monday",
		Consent:   true,
	}
}

// fieldNames returns the sorted field names of err, which must be an EInvalid *services.Error.
func fieldNames(t *testing.T, err error) []string {
	t.Helper()
	var e *services.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want *services.Error", err, err)
	}
	if e.Code != services.EInvalid {
		t.Fatalf("code = %q, want %q (err %v)", e.Code, services.EInvalid, err)
	}
	return slices.Sorted(maps.Keys(e.Fields))
}

// checkField asserts that err names exactly wantField, or is nil when
// wantField is "".
func checkField(t *testing.T, err error, wantField string) {
	t.Helper()
	if wantField == "" {
		if err != nil {
			t.Fatalf("Validate() = %v, want nil", err)
		}
		return
	}
	if got, want := fieldNames(t, err), []string{wantField}; !slices.Equal(got, want) {
		t.Errorf("Validate() fields = %v, want %v", got, want)
	}
}

func TestRequest_Validate(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(r *services.Request)
		wantField string // "" when the request must be valid
	}{
		{"OK", func(r *services.Request) {}, ""},

		{"slot_id/OK short provider", func(r *services.Request) { r.SlotID = "p_20260305T1400Z" }, ""},
		{"slot_id/ErrEmpty", func(r *services.Request) { r.SlotID = "" }, "slot_id"},
		{"slot_id/ErrDot", func(r *services.Request) { r.SlotID = "dr.lee_20260305T1400Z" }, "slot_id"},
		{"slot_id/ErrDate", func(r *services.Request) { r.SlotID = "dr-lee_2026-03-05" }, "slot_id"},
		{"slot_id/ErrWildcard", func(r *services.Request) { r.SlotID = "*_20260305T1400Z" }, "slot_id"},

		{"name/OK accents", func(r *services.Request) { r.Name = "Zoë O'Brien-Côté" }, ""},
		{"name/OK padded", func(r *services.Request) { r.Name = "  Ada  " }, ""},
		{"name/OK 120", func(r *services.Request) { r.Name = strings.Repeat("a", 120) }, ""},
		{"name/OK 41 CJK characters", func(r *services.Request) { r.Name = strings.Repeat("李", 41) }, ""},
		{"name/ErrEmpty", func(r *services.Request) { r.Name = "" }, "name"},
		{"name/ErrBlank", func(r *services.Request) { r.Name = " \t " }, "name"},
		{"name/Err121", func(r *services.Request) { r.Name = strings.Repeat("a", 121) }, "name"},
		{"name/ErrNUL", func(r *services.Request) { r.Name = "Ada\x00" }, "name"},
		{"name/ErrNewline", func(r *services.Request) { r.Name = "Ada\nLovelace" }, "name"},
		{"name/ErrZeroWidthOnly", func(r *services.Request) { r.Name = "\u200b\u200d\ufeff" }, "name"},
		{"name/ErrBidiOverride", func(r *services.Request) { r.Name = "Ada \u202eecalevoL" }, "name"},
		{"name/ErrBidiIsolate", func(r *services.Request) { r.Name = "Ada \u2066x\u2069" }, "name"},

		{"birth_date/OK today", func(r *services.Request) { r.BirthDate = "2026-03-01" }, ""},
		{"birth_date/OK 129 years", func(r *services.Request) { r.BirthDate = "1897-03-02" }, ""},
		{"birth_date/ErrEmpty", func(r *services.Request) { r.BirthDate = "" }, "birth_date"},
		{"birth_date/ErrNoPadding", func(r *services.Request) { r.BirthDate = "1990-1-2" }, "birth_date"},
		{"birth_date/ErrSlashes", func(r *services.Request) { r.BirthDate = "10/12/1990" }, "birth_date"},
		{"birth_date/ErrNoSuchDay", func(r *services.Request) { r.BirthDate = "1990-02-30" }, "birth_date"},
		{"birth_date/ErrFuture", func(r *services.Request) { r.BirthDate = "2026-03-02" }, "birth_date"},
		{"birth_date/ErrTooOld", func(r *services.Request) { r.BirthDate = "1890-01-01" }, "birth_date"},

		{"phone/OK digits", func(r *services.Request) { r.Phone = "4165550199" }, ""},
		{"phone/OK 7 digits", func(r *services.Request) { r.Phone = "555.0199" }, ""},
		{"phone/OK 15 digits", func(r *services.Request) { r.Phone = strings.Repeat("9", 15) }, ""},
		{"phone/ErrEmpty", func(r *services.Request) { r.Phone = "" }, "phone"},
		{"phone/Err6 digits", func(r *services.Request) { r.Phone = "555-019" }, "phone"},
		{"phone/Err16 digits", func(r *services.Request) { r.Phone = strings.Repeat("9", 16) }, "phone"},
		{"phone/ErrLetters", func(r *services.Request) { r.Phone = "416-555-CALL" }, "phone"},
		{"phone/ErrLetter then many digits", func(r *services.Request) { r.Phone = "x" + strings.Repeat("0", 107) }, "phone"},

		{"email/OK", func(r *services.Request) { r.Email = "ada.lovelace+clinic@example.co.uk" }, ""},
		{"email/ErrEmpty", func(r *services.Request) { r.Email = "" }, "email"},
		{"email/ErrNoAt", func(r *services.Request) { r.Email = "ada" }, "email"},
		{"email/ErrNoDomain", func(r *services.Request) { r.Email = "ada@" }, "email"},
		{"email/ErrDisplayName", func(r *services.Request) { r.Email = "Ada <ada@example.org>" }, "email"},
		{"email/ErrSpaces", func(r *services.Request) { r.Email = " ada@example.org" }, "email"},
		{"email/ErrTooLong", func(r *services.Request) { r.Email = strings.Repeat("a", 243) + "@example.org" }, "email"},

		{"reason/OK empty", func(r *services.Request) { r.Reason = "" }, ""},
		{"reason/OK 1000", func(r *services.Request) { r.Reason = strings.Repeat("a", 1000) }, ""},
		{"reason/Err1001", func(r *services.Request) { r.Reason = strings.Repeat("a", 1001) }, "reason"},
		{"reason/OK lines and tabs", func(r *services.Request) { r.Reason = "knee\r\n\tleft" }, ""},
		{"reason/OK blank", func(r *services.Request) { r.Reason = " \n " }, ""},
		{"reason/ErrControl", func(r *services.Request) { r.Reason = "ring \x07" }, "reason"},
		{"reason/ErrNUL", func(r *services.Request) { r.Reason = "knee\x00" }, "reason"},
		{"reason/ErrBidiOverride", func(r *services.Request) { r.Reason = "knee \u202eright" }, "reason"},
		{"reason/ErrZeroWidthOnly", func(r *services.Request) { r.Reason = "\u200b\u2060" }, "reason"},

		{"consent/Err", func(r *services.Request) { r.Consent = false }, "consent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			tt.edit(&r)
			checkField(t, r.Validate(requestNow), tt.wantField)
		})
	}
}

// TestRequest_Validate_Messages: text that does not show as written is
// told so, not reported as too long.
func TestRequest_Validate_Messages(t *testing.T) {
	for _, tt := range []struct {
		edit func(r *services.Request)
		want string
	}{
		{func(r *services.Request) { r.Reason = "knee\x00" }, "reason must be plain text, without control or bidi characters"},
		{func(r *services.Request) { r.Reason = "knee\u202e" }, "reason must be plain text, without control or bidi characters"},
		{func(r *services.Request) { r.Reason = "\u200b" }, "reason has no visible text: write one or leave it empty"},
		{func(r *services.Request) { r.Reason = strings.Repeat("a", 1001) }, "reason must be at most 1000 characters"},
		{func(r *services.Request) { r.Name = "Ada\x00" }, "name must be plain text, without control or bidi characters"},
		{func(r *services.Request) { r.Name = "Ada \u202eecalevoL" }, "name must be plain text, without control or bidi characters"},
		{func(r *services.Request) { r.Name = strings.Repeat("a", 121) }, "name must be at most 120 printable characters"},
	} {
		r := validRequest()
		tt.edit(&r)
		err := r.Validate(requestNow)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want %q", err, tt.want)
		}
	}
}

func TestRequest_Validate_AllFields(t *testing.T) {
	got := fieldNames(t, services.Request{}.Validate(requestNow))
	want := []string{"birth_date", "consent", "email", "name", "phone", "slot_id"}
	if !slices.Equal(got, want) {
		t.Errorf("Validate() fields = %v, want %v", got, want)
	}
}

func TestNewToken(t *testing.T) {
	a, b := services.NewToken(), services.NewToken()
	for _, tok := range []string{a, b} {
		if err := subjects.ValidRequestID(tok); err != nil {
			t.Errorf("NewToken() = %q: %v", tok, err)
		}
	}
	if a == b {
		t.Errorf("NewToken() twice = %q, want two different tokens", a)
	}
}

func TestRequestIDFor(t *testing.T) {
	tok := services.NewToken()
	id := services.RequestIDFor(tok)
	if err := subjects.ValidRequestID(id); err != nil {
		t.Errorf("RequestIDFor(%q) = %q: %v", tok, id, err)
	}
	if id == tok {
		t.Errorf("RequestIDFor(%q) = the token itself", tok)
	}
	if again := services.RequestIDFor(tok); again != id {
		t.Errorf("RequestIDFor(%q) = %q then %q, want the same", tok, id, again)
	}
	if other := services.RequestIDFor(services.NewToken()); other == id {
		t.Errorf("two tokens gave the same request id %q", id)
	}
}

func TestStatusToken(t *testing.T) {
	for _, clinic := range []string{"maple", "m1", "maple-street-physio", strings.Repeat("a", 40)} {
		t.Run(clinic, func(t *testing.T) {
			tok := services.NewToken()
			st := services.StatusToken(clinic, tok)
			gotClinic, gotID, err := services.ParseStatusToken(st)
			if err != nil {
				t.Fatalf("ParseStatusToken(%q) = %v", st, err)
			}
			if wantID := services.RequestIDFor(tok); gotClinic != clinic || gotID != wantID {
				t.Errorf("ParseStatusToken(%q) = %q, %q; want %q, %q", st, gotClinic, gotID, clinic, wantID)
			}
			if gotID == tok || strings.Contains(st, gotID) {
				t.Errorf("status token %q carries the request id %q", st, gotID)
			}
		})
	}
}

// TestParseStatusToken_RequestID checks that knowing a request ID opens no
// status page: a token made of the ID names another request.
func TestParseStatusToken_RequestID(t *testing.T) {
	id := services.RequestIDFor(services.NewToken())
	_, got, err := services.ParseStatusToken(services.StatusToken("maple", id))
	if err != nil {
		t.Fatalf("ParseStatusToken = %v", err)
	}
	if got == id {
		t.Errorf("a status token built from request id %q opens that request", id)
	}
}

func TestParseStatusToken_ErrNotFound(t *testing.T) {
	tok := services.NewToken()
	tests := []struct{ name, token string }{
		{"empty", ""},
		{"clinic only", "maple"},
		{"no token", "maple_"},
		{"no clinic", "_" + tok},
		{"token only", tok},
		{"short token", "maple_" + tok[:31]},
		{"long token", "maple_" + tok + "0"},
		{"upper-case token", "maple_" + strings.ToUpper(tok)},
		{"non-hex token", "maple_" + strings.Repeat("g", 32)},
		{"extra part", "maple_" + tok + "_x"},
		{"clinic with dot", "ma.ple_" + tok},
		{"clinic with star", "ma*_" + tok},
		{"clinic star only", "*_" + tok},
		{"clinic with gt", "ma>_" + tok},
		{"clinic gt only", ">_" + tok},
		{"clinic upper case", "Maple_" + tok},
		{"clinic one letter", "m_" + tok},
		{"clinic with space", "ma ple_" + tok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clinic, id, err := services.ParseStatusToken(tt.token)
			if got := services.ErrorCode(err); err == nil || got != services.ENotFound {
				t.Errorf("ParseStatusToken(%q) = %q, %q, %v; want code %q", tt.token, clinic, id, err, services.ENotFound)
			}
			if clinic != "" || id != "" {
				t.Errorf("ParseStatusToken(%q) = %q, %q; want empty IDs with the error", tt.token, clinic, id)
			}
		})
	}
}
