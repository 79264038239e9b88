package bindcore

import (
	"errors"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/cmport"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// specError turns an error of the kernel TCP reservation or of rdma_cm into
// the spec's code, keeping the cause. what says which half failed ("kernel
// TCP", "rdma_cm"). An error that already has a WSA code is returned as is.
func specError(op string, ap netip.AddrPort, what string, err error) error {
	if _, ok := wsa.CodeOf(err); ok {
		return err
	}
	in := ap.String()
	var held *cmport.HeldError
	switch {
	case errors.As(err, &held):
		return wsa.Wrap(wsa.WSAEADDRINUSE, op, in, held.Err, "%s", held.Msg)
	case errors.Is(err, unix.EADDRINUSE):
		return wsa.Wrap(wsa.WSAEADDRINUSE, op, in, err,
			"port %d is held in the %s port space by a socket that does not share it (another user's, or a program outside rdmabind)", ap.Port(), what)
	case errors.Is(err, unix.EADDRNOTAVAIL):
		return wsa.Wrap(wsa.WSAEADDRNOTAVAIL, op, in, err, "%s is not an address of this host (%s)", ap.Addr(), what)
	case errors.Is(err, rdmacm.ErrNotSupported):
		return wsa.Wrap(wsa.WSAENETDOWN, op, in, err, "no RDMA subsystem")
	case errors.Is(err, unix.ENODEV):
		return wsa.Wrap(wsa.WSAEADDRNOTAVAIL, op, in, err, "no RDMA device serves %s (%s)", ap.Addr(), what)
	case errors.Is(err, unix.ENETDOWN), errors.Is(err, unix.ENXIO):
		return wsa.Wrap(wsa.WSAENETDOWN, op, in, err, "the RDMA device went away (%s)", what)
	case errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.ENOMEM),
		errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE):
		return wsa.Wrap(wsa.WSAENOBUFS, op, in, err, "out of %s resources", what)
	}
	return err
}
