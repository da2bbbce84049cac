//go:build !unix

package node

// fileLimit is 0: the limit is not known here.
func fileLimit() uint64 { return 0 }
