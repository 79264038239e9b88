package verbs

import (
	"fmt"
	"net/netip"

	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// Context is an open RDMA device (struct ibv_context). The contexts this
// package hands out are librdmacm's, each of an rdma_cm id (ContextOf):
// librdmacm counts the id as a user of the device's context and closes the
// context only once the device is gone and no id uses it, so a Context is
// never closed here, and must not be used after the last id of its device
// is destroyed; the PDs and CQs made on it are closed, before that id.
type Context struct {
	h    handle
	name string
	port int // the port of the rdma_cm id it came from
}

// ContextOf returns the device context of an rdma_cm id (id->verbs), which
// must be bound to a device or have a resolved address, and the id's port
// number.
//
// Errors: ENODEV when the id has no device yet, rdmacm.ErrClosed for a
// closed (or nil) id, and ErrNotSupported without cgo.
func ContextOf(id *rdmacm.ID) (*Context, error) {
	if err := have("context of rdma_cm id"); err != nil {
		return nil, err
	}
	c, name, port, err := impl.ctxOfID(id)
	if err != nil {
		return nil, fmt.Errorf("context of rdma_cm id: %w", err)
	}
	return &Context{h: c, name: name, port: port}, nil
}

// Name is the device's name.
func (c *Context) Name() string { return c.name }

// Port is the port number of the rdma_cm id the context came from.
func (c *Context) Port() int { return c.port }

// QueryPort returns the attributes of a port of the device (ibv_query_port).
//
// Errors: the errno of ibv_query_port (EINVAL for a port that does not
// exist).
func (c *Context) QueryPort(port int) (PortAttr, error) {
	a, err := impl.queryPort(c.h, port)
	if err != nil {
		return PortAttr{}, fmt.Errorf("ibv_query_port %s/%d: %w", c.name, port, err)
	}
	return a, nil
}

// QueryGID returns the GID at index of a port (ibv_query_gid), as the
// package rdma gives GIDs: a 16-byte netip.Addr (netip.AddrFrom16), so an
// IPv4 RoCE GID is the IPv4-mapped address ::ffff:a.b.c.d.
//
// Errors: the errno of ibv_query_gid.
func (c *Context) QueryGID(port, index int) (netip.Addr, error) {
	g, err := impl.queryGID(c.h, port, index)
	if err != nil {
		return g, fmt.Errorf("ibv_query_gid %s/%d[%d]: %w", c.name, port, index, err)
	}
	return g, nil
}
