package cmraw

import (
	"errors"
	"unsafe"
)

// ErrNoHook is returned by With when cgo/rdmacm is built without cgo.
var ErrNoHook = errors.New("rdma_cm raw handle: not available (built without cgo)")

// WithID is set by cgo/rdmacm: it runs fn with the struct rdma_cm_id * of
// id (an *rdmacm.ID, the type cgo/verbs's API takes; any here because this
// package cannot import rdmacm) while holding the ID's lock, so that the
// cm_id cannot be destroyed during fn. It fails with the ID's ErrClosed when
// the ID is closed or nil, and EINVAL for a value of another type.
var WithID func(id any, fn func(cmid unsafe.Pointer) error) error

// With calls WithID, or fails with ErrNoHook where it is not set.
func With(id any, fn func(cmid unsafe.Pointer) error) error {
	if WithID == nil {
		return ErrNoHook
	}
	return WithID(id, fn)
}
