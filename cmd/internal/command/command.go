// Package command holds what the relay and clinic-agent command lines share:
// the usage error and the mapping from an error to an exit code.
package command

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/clinicrelay/clinicrelay/services"
)

// ErrUsage marks an error as the caller's misuse: exit code 2 and the usage text.
var ErrUsage = errors.New("usage")

// Exit prints err for the program name and returns its exit code: 0 for nil,
// 2 (with usage) for an ErrUsage, 1 otherwise.
func Exit(name, usage string, err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage):
		if err != ErrUsage {
			fmt.Fprintln(stderr, strings.TrimSuffix(err.Error(), ": "+ErrUsage.Error()))
		}
		fmt.Fprint(stderr, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %s\n", name, describe(err))
		return 1
	}
}

// describe is a domain error's message and cause, with one line per field
// it names (the flag of the same name); anything else as it is.
func describe(err error) string {
	var de *services.Error
	if !errors.As(err, &de) {
		return err.Error()
	}
	msg := de.Message
	if de.Err != nil {
		msg += ": " + de.Err.Error() // an operator's command: the cause helps
	}
	for _, f := range slices.Sorted(maps.Keys(de.Fields)) {
		msg += fmt.Sprintf("\n  --%s: %s", f, de.Fields[f])
	}
	return msg
}
