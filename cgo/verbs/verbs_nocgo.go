//go:build !cgo

package verbs

// Built without cgo there is no libibverbs: impl stays nil and every
// constructor fails with an error matching ErrNotSupported and
// unix.EOPNOTSUPP.
