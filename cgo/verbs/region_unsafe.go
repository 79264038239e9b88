package verbs

import (
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Region is memory for the device: an anonymous private mapping (mmap),
// outside the Go heap, so that it can be registered (PD.RegMR) and written by
// the NIC while Go runs. Close unmaps it; deregister its MRs first.
type Region struct {
	mu  sync.RWMutex
	buf []byte
}

// NewRegion maps size bytes (rounded up to the page size), populated.
//
// Errors: the errno of mmap (ENOMEM), EINVAL for size <= 0.
func NewRegion(size int) (*Region, error) { return mapRegion(size, mmapFlags) }

// ReserveRegion maps size bytes (rounded up to the page size) without
// populating them: the pages cost nothing until they are written or
// registered (PD.RegMRRange), so a connection can reserve the most memory
// it may grow into and pay only for what it registers.
//
// Errors: as NewRegion's.
func ReserveRegion(size int) (*Region, error) {
	r, err := mapRegion(size, reserveFlags)
	if err == nil {
		noHugePages(r.buf)
	}
	return r, err
}

func mapRegion(size, flags int) (*Region, error) {
	if size <= 0 {
		return nil, fmt.Errorf("mmap %d bytes: %w", size, unix.EINVAL)
	}
	pg := unix.Getpagesize()
	size = (size + pg - 1) / pg * pg
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, flags)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes: %w", size, err)
	}
	return &Region{buf: b}, nil
}

// Bytes returns the mapped memory (nil once closed). Do not use it after
// Close.
func (r *Region) Bytes() []byte {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.buf
}

// Addr returns the address of byte off of the region, for a work request.
func (r *Region) Addr(off int) uintptr {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.buf == nil {
		return 0
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(r.buf))) + uintptr(off)
}

// Close unmaps the region. Safe to call more than once.
//
// Errors: the errno of munmap.
func (r *Region) Close() error {
	r.mu.Lock()
	b := r.buf
	r.buf = nil
	r.mu.Unlock()
	if b == nil {
		return nil
	}
	if err := unix.Munmap(b); err != nil {
		return fmt.Errorf("munmap: %w", err)
	}
	return nil
}

// touch writes a zero into every page of b that is not one already, so
// that each is faulted in (b is fresh anonymous memory: zeros).
func touch(b []byte) {
	pg := unix.Getpagesize()
	for i := 0; i < len(b); i += pg {
		if b[i] == 0 {
			b[i] = 0
		}
	}
}
