// Package command holds what the relay and clinic-agent command lines share:
// the usage error and the mapping from an error to an exit code.
package command

import (
	"errors"
	"fmt"
	"io"
	"strings"
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
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
}
