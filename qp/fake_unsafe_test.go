package qp

import (
	"sync/atomic"
	"unsafe"
)

// fakeMemory returns size bytes aligned for 64-bit atomics, as the real
// transport's mmap'd region is.
func fakeMemory(size int) []byte {
	w := make([]uint64, (size+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(w))), size)[:size:size]
}

// fakeDMA writes src into dst the way the fake's RDMA WRITE lands: word by
// word with atomic stores where both are aligned (the credit word is read
// by a polling sender with atomic loads, as a NIC's write is not visible to
// the race detector), byte by byte otherwise.
func fakeDMA(dst, src []byte) {
	n := len(src)
	if n%8 != 0 || uintptr(unsafe.Pointer(unsafe.SliceData(dst)))%8 != 0 || uintptr(unsafe.Pointer(unsafe.SliceData(src)))%8 != 0 {
		copy(dst, src)
		return
	}
	for i := 0; i < n; i += 8 {
		v := atomic.LoadUint64((*uint64)(unsafe.Pointer(&src[i])))
		atomic.StoreUint64((*uint64)(unsafe.Pointer(&dst[i])), v)
	}
}
