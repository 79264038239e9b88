package qp

import (
	"errors"

	"github.com/rdmabind/rdmabind/cgo/verbs"
)

// ErrClosed is wrapped by the errors of a Conn's or Listener's methods
// after its Close (and of calls its Close interrupted). It is net.ErrClosed,
// so code written for net.Conn recognises it.
var ErrClosed = errClosed

// ErrNotSupported is wrapped where RDMA verbs cannot be used at all (built
// without cgo); it is verbs.ErrNotSupported.
var ErrNotSupported = verbs.ErrNotSupported

// ErrTruncated is returned by Recv when a message was longer than the
// buffer: the buffer holds its beginning, the rest is dropped.
var ErrTruncated = errors.New("qp: message longer than the buffer, truncated")

// ErrProtocol is wrapped when the peer is not an rdmabind qp peer (bad
// hello), or breaks the protocol.
var ErrProtocol = errors.New("qp: protocol error")
