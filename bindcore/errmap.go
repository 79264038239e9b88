package bindcore

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/cmport"
	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/bindcore/shadow"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
	"github.com/rdmabind/rdmabind/rdma"
)

// This file is the one place where errors become the spec's. The packages
// below bindcore (rdma, registry, shadow, steer, cgo/...) return errnos and
// sentinels of their own, each error naming its input and what was
// expected; bindcore turns them into *wsa.Error here, keeping them as the
// cause (so errors.Is still finds rdma.ErrNoRDMA in a Bind's error).

// sentinelCodes maps every sentinel of the packages below bindcore that
// stands for a spec condition to its code. msg, when set, heads the
// message; without it the wrapped error's own text (which names the input
// and what was expected) is the message. A sentinel not listed here
// (registry.ErrCorrupt, shadow.ErrClosed, ...) is no spec condition: its
// error is passed on unchanged.
var sentinelCodes = []struct {
	sentinel error
	code     wsa.Code
	msg      string
}{
	{rdma.ErrNoRDMA, wsa.WSAENETDOWN, ""},
	{rdma.ErrNoDevice, wsa.WSAENETDOWN, ""},
	{rdma.ErrPortDown, wsa.WSAENETDOWN, ""},
	{rdma.ErrTopology, wsa.WSAENETDOWN, ""},
	{rdma.ErrAddrNotLocal, wsa.WSAEADDRNOTAVAIL, ""},
	{rdma.ErrAddrNotServed, wsa.WSAEADDRNOTAVAIL, ""},
	{registry.ErrConflict, wsa.WSAEADDRINUSE, ""},
	{registry.ErrFull, wsa.WSAENOBUFS, ""},
	{registry.ErrNotSupported, wsa.WSAENETDOWN, "no port registry on this platform"},
	{shadow.ErrNotSupported, wsa.WSAENETDOWN, "no kernel TCP reservation on this platform"},
	{rdmacm.ErrNotSupported, wsa.WSAENETDOWN, "no RDMA subsystem"},
}

// errnoCodes maps the errnos of the calls that return no sentinel (the
// shadow's bind(2), librdmacm's rdma_bind_addr and rdma_listen) to codes,
// tried in order. what names the port space or step ("kernel TCP",
// "rdma_cm").
var errnoCodes = []struct {
	errnos []unix.Errno
	code   wsa.Code
	msg    func(ap netip.AddrPort, what string) string
}{
	{[]unix.Errno{unix.EADDRINUSE}, wsa.WSAEADDRINUSE, func(ap netip.AddrPort, what string) string {
		return fmt.Sprintf("port %d is held in the %s port space by a socket that does not share it (another user's, or a program outside rdmabind)", ap.Port(), what)
	}},
	{[]unix.Errno{unix.EADDRNOTAVAIL}, wsa.WSAEADDRNOTAVAIL, func(ap netip.AddrPort, what string) string {
		return fmt.Sprintf("%s is not an address of this host (%s)", ap.Addr(), what)
	}},
	{[]unix.Errno{unix.ENODEV}, wsa.WSAEADDRNOTAVAIL, func(ap netip.AddrPort, what string) string {
		return fmt.Sprintf("no RDMA device serves %s (%s)", ap.Addr(), what)
	}},
	{[]unix.Errno{unix.ENETDOWN, unix.ENXIO}, wsa.WSAENETDOWN, func(_ netip.AddrPort, what string) string {
		return fmt.Sprintf("the RDMA device went away (%s)", what)
	}},
	{[]unix.Errno{unix.ENOBUFS, unix.ENOMEM, unix.EMFILE, unix.ENFILE}, wsa.WSAENOBUFS, func(_ netip.AddrPort, what string) string {
		return fmt.Sprintf("out of %s resources", what)
	}},
}

// SpecError returns err as the spec error of op on input: err itself if it
// already is a *wsa.Error; a *wsa.Error of the code of the sentinel it
// wraps (the table in docs/errors.md: rdma.ErrNoRDMA is WSAENETDOWN,
// registry.ErrConflict WSAEADDRINUSE, ...), with err as its cause; and err
// unchanged when it wraps no sentinel that stands for a spec condition
// (registry.ErrCorrupt, say). Bare errnos are not mapped here: only Bind and
// Listen, which know the step that failed, map them.
//
// The CLI uses it for what it asks of rdma directly (rdmabind devices).
func SpecError(op, input string, err error) error {
	if out, ok := sentinelSpec(op, input, err); ok {
		return out
	}
	return err
}

// sentinelSpec is SpecError, reporting whether err is or became a spec
// error.
func sentinelSpec(op, input string, err error) (error, bool) {
	if err == nil {
		return nil, false
	}
	if _, ok := wsa.CodeOf(err); ok {
		return err, true
	}
	for _, s := range sentinelCodes {
		if errors.Is(err, s.sentinel) {
			return wsa.Wrap(s.code, op, input, err, "%s", s.msg), true
		}
	}
	return err, false
}

// specError is SpecError for a step of Bind or Listen on ap, which also
// maps the errnos of the kernel TCP reservation and of rdma_cm. what says
// which step failed ("registry", "kernel TCP", "rdma_cm").
func specError(op string, ap netip.AddrPort, what string, err error) error {
	if out, ok := sentinelSpec(op, ap.String(), err); ok || err == nil {
		return out
	}
	// A listener of another process holds the port in rdma_cm's space:
	// cmport says so in its own words.
	var held *cmport.HeldError
	if errors.As(err, &held) {
		return wsa.Wrap(wsa.WSAEADDRINUSE, op, ap.String(), held.Err, "%s", held.Msg)
	}
	for _, e := range errnoCodes {
		for _, errno := range e.errnos {
			if errors.Is(err, errno) {
				return wsa.Wrap(e.code, op, ap.String(), err, "%s", e.msg(ap, what))
			}
		}
	}
	return err
}
