//go:build !cgo

package rdmacm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Built without cgo there is no librdmacm: NewEventChannel fails with an
// error that matches both ErrNotSupported and unix.EOPNOTSUPP, and since every
// ID comes from an EventChannel, nothing else of the API can be reached.
func newChannelOps() (channelOps, error) {
	return nil, fmt.Errorf("%w (%w: built without cgo, no librdmacm)", unix.EOPNOTSUPP, ErrNotSupported)
}
