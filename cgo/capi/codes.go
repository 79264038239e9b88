//go:build linux && cgo

package main

import (
	"context"
	"errors"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/qp"
)

// The WSA codes beyond WSPBind's contract (bindcore/wsa has those), by
// their winsock2.h numbers, as include/rdmabind.h defines them.
const (
	wsaEINTR           = 10004
	wsaEALREADY        = 10037
	wsaEMFILE          = 10024
	wsaEPROTONOSUPPORT = 10043
	wsaESOCKTNOSUPPORT = 10044
	wsaEOPNOTSUPP      = 10045
	wsaEAFNOSUPPORT    = 10047
	wsaENETUNREACH     = 10051
	wsaECONNABORTED    = 10053
	wsaECONNRESET      = 10054
	wsaEISCONN         = 10056
	wsaENOTCONN        = 10057
	wsaETIMEDOUT       = 10060
	wsaECONNREFUSED    = 10061
	wsaEHOSTUNREACH    = 10065
)

// codeOf is the WSA code for err: its spec code when it has one, else the
// code of its errno.
func codeOf(err error) int {
	if c, ok := wsa.CodeOf(err); ok {
		return int(c)
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.Is(err, unix.ETIMEDOUT):
		return wsaETIMEDOUT
	case errors.Is(err, unix.ECONNREFUSED):
		return wsaECONNREFUSED
	case errors.Is(err, unix.ECONNRESET):
		return wsaECONNRESET
	case errors.Is(err, unix.ENETDOWN), errors.Is(err, unix.ENODEV):
		return int(wsa.WSAENETDOWN)
	case errors.Is(err, unix.ENETUNREACH):
		return wsaENETUNREACH
	case errors.Is(err, unix.EHOSTUNREACH):
		return wsaEHOSTUNREACH
	case errors.Is(err, unix.ECONNABORTED):
		return wsaECONNABORTED
	case errors.Is(err, context.Canceled):
		return wsaEINTR // a blocking call cancelled (WSPCloseSocket)
	case errors.Is(err, qp.ErrProtocol):
		return wsaECONNABORTED // the peer is not an rdmabind peer, or broke the protocol
	case errors.Is(err, net.ErrClosed):
		return int(wsa.WSAENOTSOCK) // closed by another thread meanwhile
	case errors.Is(err, unix.EADDRINUSE):
		return int(wsa.WSAEADDRINUSE)
	case errors.Is(err, unix.EADDRNOTAVAIL):
		return int(wsa.WSAEADDRNOTAVAIL)
	case errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.ENOMEM):
		return int(wsa.WSAENOBUFS)
	case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE):
		return wsaEMFILE
	case errors.Is(err, unix.EINVAL):
		return int(wsa.WSAEINVAL)
	}
	return int(wsa.WSAENETDOWN) // the network subsystem failed
}
