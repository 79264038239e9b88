package rdmabind

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/qp"
)

// MaxMessage is the largest message a Conn's Write sends: longer writes go
// as several. It is qp's default bulk area, so that a full message is one
// RDMA WRITE with immediate data; a Read with a buffer at least this long
// receives without a copy of its own.
const MaxMessage = 1 << 20

// Conn is a byte stream over a qp connection: a net.Conn.
type Conn struct {
	c       *qp.Conn
	network string
	local   *Addr
	remote  *Addr
	sock    *bindcore.Socket // the dialled socket this Conn owns; nil when accepted

	rmu  sync.Mutex // one Read at a time; guards buf and rest
	buf  *[]byte    // MaxMessage bytes from bufPool while rest is not empty
	rest []byte     // what buf holds that no Read has returned yet

	wmu sync.Mutex // one Write at a time: a Write's messages stay in order

	closeOnce sync.Once
	closeErr  error
}

var _ net.Conn = (*Conn)(nil)

func newConn(c *qp.Conn, network string, sock *bindcore.Socket) *Conn {
	return &Conn{c: c, network: network, local: newAddr(c.LocalAddr()), remote: newAddr(c.RemoteAddr()), sock: sock}
}

// Read reads what has arrived, at most len(p) bytes: the rest of a message
// an earlier Read took part of, or the next message (waiting for it).
//
// Errors: io.EOF after the peer's Close; else a *net.OpError whose Err
// matches os.ErrDeadlineExceeded (Timeout true) past the read deadline,
// net.ErrClosed after Close, unix.ECONNRESET when the peer died,
// unix.ENETDOWN when the device went.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		c.release()
		return n, nil
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		var n int
		var err error
		if len(p) >= MaxMessage {
			n, err = c.c.Recv(p)
		} else {
			c.buf = bufPool.Get().(*[]byte)
			buf := *c.buf
			n, err = c.c.Recv(buf)
			if err == nil {
				k := copy(p, buf[:n])
				c.rest = buf[k:n]
				n = k
			}
			c.release()
		}
		if err != nil {
			return 0, c.opErr("read", err)
		}
		if n > 0 {
			return n, nil
		}
		// An empty message (Write never sends one): wait for the next.
	}
}

// bufPool holds the MaxMessage buffers short Reads receive into: a Conn
// holds one only while part of a message waits in it, so idle connections
// (an HTTP keep-alive pool) hold none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, MaxMessage); return &b }}

// release gives the buffer back once nothing of it waits; c.rmu held.
func (c *Conn) release() {
	if len(c.rest) == 0 && c.buf != nil {
		c.rest = nil
		bufPool.Put(c.buf)
		c.buf = nil
	}
}

// Write sends p as messages of at most MaxMessage bytes and returns when
// the last has been handed to the device (qp's Send: its buffer is free
// again); the peer's credits bound what is in flight.
//
// Errors: a *net.OpError whose Err matches os.ErrDeadlineExceeded
// (Timeout true) past the write deadline, net.ErrClosed after Close,
// unix.ECONNRESET, unix.ENETDOWN; n is what was sent before.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := 0
	for n < len(p) {
		m := min(len(p)-n, MaxMessage)
		if err := c.c.Send(p[n : n+m]); err != nil {
			return n, c.opErr("write", err)
		}
		n += m
	}
	return n, nil
}

// Close says goodbye to the peer (its Read then returns io.EOF), frees the
// connection and, for a dialled Conn, closes its socket (the port is free
// again). Safe to call more than once.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		err := c.c.Close()
		if c.sock != nil {
			err = errors.Join(err, c.sock.Close())
		}
		if err != nil {
			c.closeErr = c.opErr("close", err)
		}
	})
	return c.closeErr
}

// LocalAddr is the connection's local address (an *Addr): the bound
// socket's address and port.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr is the peer's address (an *Addr): the peer socket's address
// and port.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.c.SetDeadline(t) }

// SetReadDeadline bounds Read (also one waiting now); the zero time: no
// bound.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

// SetWriteDeadline bounds Write (also one waiting now); the zero time: no
// bound.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.c.SetWriteDeadline(t) }

// QP is the qp connection under the stream, for its mode and chunk size.
func (c *Conn) QP() *qp.Conn { return c.c }

// opErr wraps err as package net does. io.EOF stays itself.
func (c *Conn) opErr(op string, err error) error {
	if errors.Is(err, io.EOF) {
		return io.EOF
	}
	return &net.OpError{Op: op, Net: c.network, Source: c.local, Addr: c.remote, Err: netErr(err)}
}

// netErr is err as a net.OpError's Err: a deadline (os.ErrDeadlineExceeded,
// context.DeadlineExceeded) becomes a timeoutError, whose Timeout is what
// net.OpError.Timeout asks, with err's text.
func netErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return &timeoutError{err}
	}
	return err
}

// timeoutError is a deadline's error: a net.Error whose Timeout is true,
// matching os.ErrDeadlineExceeded.
type timeoutError struct{ err error }

func (e *timeoutError) Error() string   { return e.err.Error() }
func (e *timeoutError) Unwrap() error   { return e.err }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }
