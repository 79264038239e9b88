//go:build cgo

package rdmacm

import (
	"unsafe"

	"github.com/rdmabind/rdmabind/cgo/internal/cmraw"
	"golang.org/x/sys/unix"
)

// The raw cm_id for cgo/verbs (rdma_create_qp, id->verbs), through the
// internal package cmraw: no C type in this package's API.
func init() {
	cmraw.WithID = func(x any, fn func(unsafe.Pointer) error) error {
		id, ok := x.(*ID)
		if !ok {
			return unix.EINVAL
		}
		return id.do(func(o idOps) error {
			c, ok := o.(*cID)
			if !ok {
				return unix.EOPNOTSUPP
			}
			return fn(unsafe.Pointer(c.p))
		})
	}
}
