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
