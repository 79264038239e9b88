package qp

import (
	"sync/atomic"
	"unsafe"
)

// The credit word: the peer RDMA-writes {v, ^v} (two little-endian
// uint64, 16 bytes) into our region; a torn write shows as v != ^w and is
// ignored (the values only grow, the next write brings a newer one).

func loadCredit(b []byte, off int) (uint64, bool) {
	p := (*[2]uint64)(unsafe.Pointer(&b[off]))
	v := atomic.LoadUint64(&p[0])
	w := atomic.LoadUint64(&p[1])
	return v, v == ^w
}

func storeCredit(b []byte, off int, v uint64) {
	p := (*[2]uint64)(unsafe.Pointer(&b[off]))
	atomic.StoreUint64(&p[0], v)
	atomic.StoreUint64(&p[1], ^v)
}
