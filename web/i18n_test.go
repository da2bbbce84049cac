package web

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"html/template"
	"io/fs"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template/parse"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

// verbRE finds the fmt verbs of a message, e.g. %s, %d, %[2]d.
var verbRE = regexp.MustCompile(`%(\[\d+\])?[a-z]`)

// TestCatalog_SameKeysEverywhere: every language has every key, none is
// empty, and each key takes the same arguments in every language.
func TestCatalog_SameKeysEverywhere(t *testing.T) {
	en := messages[languages[0]]
	if len(en) == 0 {
		t.Fatal("no English catalog")
	}
	for _, l := range languages {
		for k, v := range messages[l] {
			if _, ok := en[k]; !ok {
				t.Errorf("%s has %q, English does not", l, k)
			}
			if strings.TrimSpace(v) == "" {
				t.Errorf("%s: %q is empty", l, k)
			}
		}
		for k, v := range en {
			got, ok := messages[l][k]
			if !ok {
				t.Errorf("%s lacks %q", l, k)
				continue
			}
			if a, b := argKinds(v), argKinds(got); !slices.Equal(a, b) {
				t.Errorf("%s: %q takes %v, English %v", l, k, b, a)
			}
		}
	}
}

// argKinds lists a message's arguments by position as their verb letters.
func argKinds(msg string) []string {
	var out []string
	next := 0
	for _, m := range verbRE.FindAllStringSubmatch(msg, -1) {
		i := next
		if m[1] != "" {
			i, _ = strconv.Atoi(strings.Trim(m[1], "[]"))
			i--
		}
		for len(out) <= i {
			out = append(out, "")
		}
		out[i] = m[0][len(m[0])-1:]
		next = i + 1
	}
	return out
}

// usedKey is a key a template or Go file uses; plural keys need .one and .other.
type usedKey struct {
	where, key string
	plural     bool
}

func checkKeys(t *testing.T, used []usedKey) {
	t.Helper()
	for _, u := range used {
		keys := []string{u.key}
		if u.plural {
			keys = []string{u.key + ".one", u.key + ".other"}
		}
		for _, k := range keys {
			for _, l := range languages {
				if _, ok := messages[l][k]; !ok {
					t.Errorf("%s uses %q, which %s lacks", u.where, k, l)
				}
			}
		}
	}
}

// TestTemplates_KnownKeys: every t and tn call in the templates names, as a
// string literal, a key every language has.
func TestTemplates_KnownKeys(t *testing.T) {
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil || len(names) == 0 {
		t.Fatal(names, err)
	}
	var used []usedKey
	for _, n := range names {
		tm, err := template.New("").Funcs(templateFuncs("en")).ParseFS(assets, n)
		if err != nil {
			t.Fatal(err)
		}
		for _, def := range tm.Templates() {
			if def.Tree == nil {
				continue
			}
			walk(def.Tree.Root, func(cmd *parse.CommandNode) {
				id, ok := cmd.Args[0].(*parse.IdentifierNode)
				if !ok || id.Ident != "t" && id.Ident != "tn" {
					return
				}
				where := fmt.Sprintf("%s (%s, offset %d)", n, def.Name(), cmd.Position())
				if len(cmd.Args) < 2 {
					t.Errorf("%s: %s without a key", where, id.Ident)
					return
				}
				s, ok := cmd.Args[1].(*parse.StringNode)
				if !ok {
					t.Errorf("%s: %s's key is not a string literal", where, id.Ident)
					return
				}
				used = append(used, usedKey{where, s.Text, id.Ident == "tn"})
			})
		}
	}
	if len(used) < 40 {
		t.Fatalf("found only %d keys in the templates: the walk misses some", len(used))
	}
	checkKeys(t, used)
}

// walk calls f for every command in the tree under n.
func walk(n parse.Node, f func(*parse.CommandNode)) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				walk(c, f)
			}
		}
	case *parse.ActionNode:
		walk(n.Pipe, f)
	case *parse.PipeNode:
		if n != nil {
			for _, c := range n.Cmds {
				walk(c, f)
			}
		}
	case *parse.CommandNode:
		f(n)
		for _, a := range n.Args {
			walk(a, f)
		}
	case *parse.IfNode:
		walk(n.Pipe, f)
		walk(n.List, f)
		walk(n.ElseList, f)
	case *parse.RangeNode:
		walk(n.Pipe, f)
		walk(n.List, f)
		walk(n.ElseList, f)
	case *parse.WithNode:
		walk(n.Pipe, f)
		walk(n.List, f)
		walk(n.ElseList, f)
	case *parse.TemplateNode:
		walk(n.Pipe, f)
	}
}

// TestGoCode_KnownKeys: every tr, trn and t call in the web package's Go
// code with a literal key names one every language has, and so do the
// keys it builds (states, field and error messages, day and month names).
func TestGoCode_KnownKeys(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	var used []usedKey
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			fn, ok := call.Fun.(*ast.Ident)
			if !ok || fn.Name != "tr" && fn.Name != "trn" && fn.Name != "t" {
				return true
			}
			if lit, ok := call.Args[1].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				k, _ := strconv.Unquote(lit.Value)
				used = append(used, usedKey{fset.Position(call.Pos()).String(), k, fn.Name == "trn"})
			}
			return true
		})
	}
	if len(used) < 10 {
		t.Fatalf("found only %d keys in the Go code", len(used))
	}
	for _, st := range []services.State{services.StateReceived, services.StateDelivered, services.StateBooked,
		services.StateDeclined, services.StateProposed, services.StateExpired, services.StateCancelled} {
		used = append(used, usedKey{"stateIn", "state." + string(st), false})
	}
	for _, k := range errorKeys {
		used = append(used, usedKey{"errorKeys", k, false})
	}
	for _, l := range languages {
		used = append(used, usedKey{"langLinks", "lang." + l, false})
	}
	for i := range 7 {
		used = append(used, usedKey{"formatDay", fmt.Sprint("day.", i), false})
	}
	for i := 1; i <= 12; i++ {
		used = append(used, usedKey{"formatDay", fmt.Sprint("month.", i), false})
	}
	checkKeys(t, used)
}

// TestFieldError_EveryValidateMessage: each message Request.Validate can
// give has its own translation, not the catch-all.
// TestFieldError_EveryValidateMessage: every field error Validate gives has
// a code, and the code a text in every language.
func TestFieldError_EveryValidateMessage(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	keys := map[string]bool{}
	for _, r := range []services.Request{
		{},
		{Name: strings.Repeat("n", 121), BirthDate: "1800-01-01", Reason: strings.Repeat("r", 1001)},
		{Name: "Ada\u202e", Reason: "ring\x07"},
		{Reason: "\u200b"},
	} {
		err := r.Validate(now)
		_, _, fields := classify(err)
		for f := range fields {
			k := fieldKeys(err)[f]
			if k == "" {
				t.Errorf("field %s (%q) has no message code", f, fields[f])
			}
			keys[k] = true
		}
	}
	if len(keys) < 12 {
		t.Errorf("Validate gave only %d codes: %v", len(keys), keys)
	}
	for k := range keys {
		for _, l := range languages {
			if got := fieldError(l, k); got == tr(l, "field.other") {
				t.Errorf("%s: %q has no translation", l, k)
			}
		}
	}
}

// TestErrorText_ByCode: a domain error's page text follows its code, not its
// English wording: rewording the message keeps its translation.
func TestErrorText_ByCode(t *testing.T) {
	err := services.Keyed(services.ENotFound, "error.no_clinic", "no clinic %q here, reworded", "x")
	for _, l := range languages {
		if got, want := errorText(l, messageKey(err), err.Message), tr(l, "error.no_clinic"); got != want {
			t.Errorf("%s: %q, want %q", l, got, want)
		}
	}
	if got := errorText("fr", messageKey(services.Keyed(services.EInternal, "error.no_clinic", "boom")), "boom"); got != tr("fr", "error.other") {
		t.Errorf("an internal error shows %q", got)
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		at     time.Time
		en, fr string
	}{
		{time.Time{}, "never", "jamais"},
		{now.Add(-30 * time.Second), "just now", "à l'instant"},
		{now.Add(-5 * time.Minute), "5 min ago", "il y a 5 min"},
		{now.Add(-3 * time.Hour), "3 h ago", "il y a 3 h"},
		{now.Add(-72 * time.Hour), "3 days ago", "il y a 3 jours"},
	} {
		if got := ago("en", now, tt.at); got != tt.en {
			t.Errorf("ago(en, %v) = %q, want %q", tt.at, got, tt.en)
		}
		if got := ago("fr", now, tt.at); got != tt.fr {
			t.Errorf("ago(fr, %v) = %q, want %q", tt.at, got, tt.fr)
		}
	}
}

func TestFormatSlot(t *testing.T) {
	loc, _ := services.LoadZone("America/Toronto")
	at := time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC)
	for l, want := range map[string]string{"en": "Mon 2 Mar 2026 09:00 EST", "fr": "lun. 2 mars 2026 09:00 EST"} {
		if got := formatSlot(l, at, loc); got != want {
			t.Errorf("formatSlot(%s) = %q, want %q", l, got, want)
		}
	}
	if got := trn("fr", "clinic.free", 0); got != "0 libre" {
		t.Errorf("trn(fr, clinic.free, 0) = %q", got)
	}
	if got := trn("en", "clinic.free", 0); got != "0 free" {
		t.Errorf("trn(en, clinic.free, 0) = %q", got)
	}
}

// TestLanguage_Choice: ?lang= wins and is remembered in a Lax cookie, then
// the cookie, then Accept-Language, then English; <html lang> follows.
func TestLanguage_Choice(t *testing.T) {
	h := newPageServer(t, "America/Toronto", time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC))
	for _, tt := range []struct {
		name, path string
		headers    []string
		want       string
		cookie     string // the lang cookie set, "" for none
	}{
		{"Default", "/", nil, "en", ""},
		{"AcceptFrench", "/", []string{"Accept-Language: fr-CA,fr;q=0.9,en;q=0.5"}, "fr", ""},
		{"AcceptEnglishFirst", "/", []string{"Accept-Language: en-GB, fr;q=0.8"}, "en", ""},
		{"AcceptGerman", "/", []string{"Accept-Language: de-DE,de;q=0.9"}, "en", ""},
		{"AcceptGermanThenFrench", "/", []string{"Accept-Language: de, fr;q=0.5"}, "fr", ""},
		{"AcceptGarbage", "/", []string{"Accept-Language: ;;;q=x,,"}, "en", ""},
		{"Cookie", "/", []string{"Accept-Language: en", "Cookie: lang=fr"}, "fr", ""},
		{"CookieUnknown", "/", []string{"Accept-Language: fr", "Cookie: lang=xx"}, "fr", ""},
		{"Switch", "/?lang=fr", []string{"Accept-Language: en", "Cookie: lang=en"}, "fr", "fr"},
		{"SwitchUnknown", "/?lang=de", []string{"Accept-Language: fr"}, "fr", ""},
		{"ErrorPage", "/c/nosuch?lang=fr", nil, "fr", "fr"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, page := get(t, h, tt.path, tt.headers...)
			if !strings.Contains(page, `<html lang="`+tt.want+`">`) || res.Header.Get("Content-Language") != tt.want {
				t.Errorf("page in %q (Content-Language %q), want %s: %.200s", langOf(page), res.Header.Get("Content-Language"), tt.want, page)
			}
			var got *http.Cookie
			for _, c := range res.Cookies() {
				if c.Name == "lang" {
					got = c
				}
			}
			switch {
			case tt.cookie == "" && got != nil:
				t.Errorf("set cookie %v, want none", got)
			case tt.cookie != "" && (got == nil || got.Value != tt.cookie || got.SameSite != http.SameSiteLaxMode || got.Path != "/"):
				t.Errorf("cookie %v, want lang=%s; Path=/; SameSite=Lax", got, tt.cookie)
			}
			// As docs/i18n.md says: one header, each name once.
			if v := res.Header.Values("Vary"); len(v) != 1 || v[0] != "Accept-Language, Cookie" {
				t.Errorf("Vary %q, want one header \"Accept-Language, Cookie\"", v)
			}
		})
	}
}

func langOf(page string) string {
	if m := regexp.MustCompile(`<html lang="([^"]*)"`).FindStringSubmatch(page); m != nil {
		return m[1]
	}
	return ""
}

// TestPages_NoUntranslatedKeys: no page shows a catalog key instead of its
// text, in any language, and the French pages are in French.
func TestPages_NoUntranslatedKeys(t *testing.T) {
	loc, _ := services.LoadZone("America/Toronto")
	now := time.Date(2026, 3, 2, 7, 0, 0, 0, loc)
	h := newPageServer(t, "America/Toronto", now)
	slot := services.SlotID("dr-lee", time.Date(2026, 3, 2, 9, 0, 0, 0, loc))
	keyRE := regexp.MustCompile(`\b(site|layout|lang|home|clinic|ago|form|field|error|paused|state|date|day|month)\.[a-z_.0-9]+\b`)
	for _, l := range languages {
		for _, tt := range []struct {
			path string
			code int
			want string // in French
		}{
			{"/", 200, "Cliniques"},
			{"/c/maple", 200, "Horaires libres le lun. 2 mars"},
			{"/c/maple/request?slot=" + slot, 200, "Envoyer la demande"},
			{"/c/maple/request?slot=dr-lee_20990101T0300Z", 409, "Cet horaire n&#39;est plus libre"},
			{"/c/nosuch", 404, "Cette clinique n&#39;existe pas."},
			{"/c/maple?date=someday", 422, "La date doit être au format AAAA-MM-JJ."},
			{"/nope", 404, "Cette page n&#39;existe pas."},
		} {
			res, page := get(t, h, tt.path, "Cookie: lang="+l)
			if res.StatusCode != tt.code {
				t.Errorf("%s %s: %d, want %d", l, tt.path, res.StatusCode, tt.code)
			}
			if m := keyRE.FindString(page); m != "" && messages[l][m] != "" {
				t.Errorf("%s %s shows the key %q", l, tt.path, m)
			}
			if l == "fr" && !strings.Contains(page, tt.want) {
				t.Errorf("fr %s lacks %q: %.3000s", tt.path, tt.want, page)
			}
		}
	}
}
