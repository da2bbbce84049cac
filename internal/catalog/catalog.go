// Package catalog is every user-facing text of clinicrelay, for every channel
// (the patient pages, email notices, the email code; SMS next), in one
// message catalogue keyed by codes: locales/<lang>.json, one file per
// language with the same keys. The web front and services both read it, and
// errors carry their message's code (services.Error.Key), so a text is found
// by its code, never by its English wording. docs/i18n.md says how to add a
// string or a language.
package catalog

import (
	"embed"
	"encoding/json"
	"fmt"
	"maps"
)

//go:embed locales/*.json
var files embed.FS

// Languages lists the languages, the default first.
var Languages = []string{"en", "fr"}

// messages holds each language's texts: key -> text, a fmt format when the
// text takes arguments.
var messages = mustLoad()

func mustLoad() map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, l := range Languages {
		b, err := files.ReadFile("locales/" + l + ".json")
		if err != nil {
			panic(fmt.Sprintf("locale %s: %v", l, err))
		}
		m := map[string]string{}
		if err := json.Unmarshal(b, &m); err != nil {
			panic(fmt.Sprintf("locale %s: %v", l, err))
		}
		out[l] = m
	}
	return out
}

// Lang is lang if it is one of Languages, else the default.
func Lang(lang string) string {
	if _, ok := messages[lang]; ok {
		return lang
	}
	return Languages[0]
}

// T is the text of key in lang, with args formatted into it. A key missing in
// lang falls back to the default language, then to the key itself (the
// tests forbid both).
func T(lang, key string, args ...any) string {
	m, ok := messages[lang][key]
	if !ok {
		if m, ok = messages[Languages[0]][key]; !ok {
			return key
		}
	}
	if len(args) == 0 {
		return m
	}
	return fmt.Sprintf(m, args...)
}

// pluralOne says whether n takes the singular (".one") form in a language;
// languages not listed use English's rule.
var pluralOne = map[string]func(n int) bool{
	"en": func(n int) bool { return n == 1 },
	"fr": func(n int) bool { return n == 0 || n == 1 },
}

// N is T of key+".one" or key+".other" by n, with n as the first argument.
func N(lang, key string, n int, args ...any) string {
	one, ok := pluralOne[lang]
	if !ok {
		one = pluralOne[Languages[0]]
	}
	if one(n) {
		key += ".one"
	} else {
		key += ".other"
	}
	return T(lang, key, append([]any{n}, args...)...)
}

// Has reports whether the default language has key.
func Has(key string) bool {
	_, ok := messages[Languages[0]][key]
	return ok
}

// All is a copy of every language's texts, for tests.
func All() map[string]map[string]string {
	out := map[string]map[string]string{}
	for l, m := range messages {
		out[l] = maps.Clone(m)
	}
	return out
}
