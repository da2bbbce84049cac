package services

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// hiddenRune reports a rune that does not show as itself: a control
// character, or a bidi control (U+202E turns the rest of a line around).
func hiddenRune(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }

// reasonHidden is hiddenRune but for the line breaks and tabs a
// multi-line text keeps.
func reasonHidden(r rune) bool { return r != '\n' && r != '\r' && r != '\t' && hiddenRune(r) }

// visible reports a rune that shows: not a space, a control or a format
// character (zero-width space, joiner, bidi mark...).
func visible(r rune) bool {
	return !unicode.IsSpace(r) && !unicode.IsControl(r) && !unicode.Is(unicode.Cf, r)
}

// nameProblem is what is wrong with a person's or a clinic's name, or "":
// it needs something visible (zero-width characters alone are no name), no
// control or bidi character (a bidi override shows it other than as
// written, a line break forges a line in a list), and at most 120
// characters once trimmed.
func nameProblem(s string) (key, msg string) {
	n := strings.TrimSpace(s)
	switch {
	case strings.IndexFunc(n, visible) < 0:
		return "field.name.required", "name is required"
	case !utf8.ValidString(n) || strings.IndexFunc(n, hiddenRune) >= 0:
		return "field.name.hidden", "name must be plain text, without control or bidi characters"
	case utf8.RuneCountInString(n) > 120:
		return "field.name.long", "name must be at most 120 printable characters"
	}
	return "", ""
}

// PlainLine is s on one line, each control or bidi character a space, cut to
// at most max characters: for text that goes where a caller cannot refuse it,
// such as a connector's error in the agent's heartbeat.
func PlainLine(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if hiddenRune(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if r := []rune(s); len(r) > max {
		s = string(r[:max])
	}
	return s
}

// PlainText reports an error naming field unless s is valid UTF-8 of at most
// max characters with no control or bidi character.
func PlainText(field, s string, max int) error {
	switch {
	case !utf8.ValidString(s):
		return fmt.Errorf("%s: not valid UTF-8", field)
	case utf8.RuneCountInString(s) > max:
		return fmt.Errorf("%s: at most %d characters", field, max)
	case strings.IndexFunc(s, hiddenRune) >= 0:
		return fmt.Errorf("%s: no control or bidi characters", field)
	}
	return nil
}
