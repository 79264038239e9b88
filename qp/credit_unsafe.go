package qp

import (
	"sync/atomic"
	"unsafe"
)

// The credit word: the peer RDMA-writes {v, ^v, bv, ^bv} (four
// little-endian uint64, 32 bytes: buffers returned, bulk messages
// consumed) into our region; a torn write shows as v != ^w and is ignored
// (the values only grow, the next write brings newer ones).

func loadCredit(b []byte, off int) (v, bv uint64, ok bool) {
	p := (*[4]uint64)(unsafe.Pointer(&b[off]))
	v = atomic.LoadUint64(&p[0])
	w := atomic.LoadUint64(&p[1])
	bv = atomic.LoadUint64(&p[2])
	bw := atomic.LoadUint64(&p[3])
	return v, bv, v == ^w && bv == ^bw
}

func storeCredit(b []byte, off int, v, bv uint64) {
	p := (*[4]uint64)(unsafe.Pointer(&b[off]))
	atomic.StoreUint64(&p[0], v)
	atomic.StoreUint64(&p[1], ^v)
	atomic.StoreUint64(&p[2], bv)
	atomic.StoreUint64(&p[3], ^bv)
}

// The bulk offer: the peer RDMA-writes {addr, rkey<<32 | size, ^addr,
// ^(rkey<<32 | size)} (four little-endian uint64, 32 bytes) into our
// control page once, when it has registered its bulk area; until the write
// has landed whole the check fails and there is no offer.

func loadOffer(b []byte, off int) (addr uint64, rkey uint32, size int, ok bool) {
	p := (*[4]uint64)(unsafe.Pointer(&b[off]))
	addr = atomic.LoadUint64(&p[0])
	w := atomic.LoadUint64(&p[1])
	na := atomic.LoadUint64(&p[2])
	nw := atomic.LoadUint64(&p[3])
	return addr, uint32(w >> 32), int(uint32(w)), addr == ^na && w == ^nw
}

func storeOffer(b []byte, off int, addr uint64, rkey uint32, size int) {
	p := (*[4]uint64)(unsafe.Pointer(&b[off]))
	w := uint64(rkey)<<32 | uint64(uint32(size))
	atomic.StoreUint64(&p[0], addr)
	atomic.StoreUint64(&p[1], w)
	atomic.StoreUint64(&p[2], ^addr)
	atomic.StoreUint64(&p[3], ^w)
}
