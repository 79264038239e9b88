package steer

import (
	"sync/atomic"
	"unsafe"
)

// word returns group index idx's state word in the memory-mapped state map.
// An array map's elements are 8 bytes apart whatever their size (the kernel
// rounds the value size up to 8), and the mapping is page-aligned. Every
// process of the netns maps the same pages, and the program reads them.
func (o *nsObjects) word(idx uint32) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&o.mem[stateStride*idx]))
}
