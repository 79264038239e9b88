package qp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// hello is what each side tells the other when a connection is set up: in
// the private data of the rdma_cm request and reply, or as the first bytes
// of the TCP rendezvous. 56 bytes, the most an rdma_cm connect request
// carries.
type hello struct {
	mode      Mode
	port      uint16     // the sender's socket port (its logical port)
	qpn       uint32     // rendezvous only
	psn       uint32     // rendezvous only
	gid       netip.Addr // rendezvous only: 16-byte form (zeros on the wire for none)
	lid       uint16     // rendezvous only
	mtu       uint8      // rendezvous only: enum ibv_mtu
	recvDepth uint32     // the sender's receive buffers: the other side's credit
	chunk     uint32     // the size of each
	ctrlAddr  uint64     // the sender's control page: where the other side writes credit returns and its bulk offer
	ctrlKey   uint32     // and the rkey
	bulk      uint8      // the bulk area the sender may offer later, in 64 KiB units (0: never)
}

const (
	helloLen     = 56
	helloMagic   = "RBQ1"
	helloVersion = 2 // 2: the bulk area is offered when first needed (layout), not at ctrlAddr+1024
)

func (h *hello) marshal() []byte {
	b := make([]byte, helloLen)
	copy(b, helloMagic)
	b[4] = helloVersion
	b[5] = byte(h.mode)
	binary.BigEndian.PutUint16(b[6:], h.port)
	binary.BigEndian.PutUint32(b[8:], h.qpn)
	binary.BigEndian.PutUint32(b[12:], h.psn)
	gid := h.gid.As16()
	copy(b[16:32], gid[:])
	binary.BigEndian.PutUint16(b[32:], h.lid)
	b[34] = h.mtu
	binary.BigEndian.PutUint32(b[35:], h.recvDepth)
	binary.BigEndian.PutUint32(b[39:], h.chunk)
	binary.BigEndian.PutUint64(b[43:], h.ctrlAddr)
	binary.BigEndian.PutUint32(b[51:], h.ctrlKey)
	b[55] = h.bulk
	return b
}

func parseHello(b []byte) (hello, error) {
	var h hello
	if len(b) < helloLen || string(b[:4]) != helloMagic {
		return h, fmt.Errorf("hello: not an rdmabind qp peer (%d bytes): %w", len(b), ErrProtocol)
	}
	if b[4] != helloVersion {
		return h, fmt.Errorf("hello: version %d, want %d: %w", b[4], helloVersion, ErrProtocol)
	}
	h.mode = Mode(b[5])
	h.port = binary.BigEndian.Uint16(b[6:])
	h.qpn = binary.BigEndian.Uint32(b[8:])
	h.psn = binary.BigEndian.Uint32(b[12:])
	h.gid = netip.AddrFrom16([16]byte(b[16:32]))
	h.lid = binary.BigEndian.Uint16(b[32:])
	h.mtu = b[34]
	h.recvDepth = binary.BigEndian.Uint32(b[35:])
	h.chunk = binary.BigEndian.Uint32(b[39:])
	h.ctrlAddr = binary.BigEndian.Uint64(b[43:])
	h.ctrlKey = binary.BigEndian.Uint32(b[51:])
	h.bulk = b[55]
	if h.recvDepth < 2 || h.chunk < 64 {
		return h, fmt.Errorf("hello: %d buffers of %d bytes: %w", h.recvDepth, h.chunk, ErrProtocol)
	}
	return h, nil
}
