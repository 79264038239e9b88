package qp

import "net"

var errClosed = net.ErrClosed
