//go:build unix

package node

import "syscall"

// fileLimit is how many files the process may open (Go raised the soft
// limit to the hard one at start), or 0 when it cannot tell.
func fileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	return l.Cur
}
