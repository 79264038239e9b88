package verbs

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// PD is a protection domain (ibv_alloc_pd). It keeps its Context alive;
// its memory regions and QPs keep it alive, and its Close closes those
// still open first (QPs, then MRs), then deallocates it.
type PD struct {
	ctx *Context

	mu       sync.Mutex
	h        handle // 0 once closed
	children []closer
}

type closer interface{ Close() error }

// AllocPD allocates a protection domain on the device.
//
// Errors: the errno of ibv_alloc_pd (ENOMEM).
func (c *Context) AllocPD() (*PD, error) {
	h, err := impl.allocPD(c.h)
	if err != nil {
		return nil, fmt.Errorf("ibv_alloc_pd %s: %w", c.name, err)
	}
	return &PD{ctx: c, h: h}, nil
}

// Context returns the PD's device context.
func (pd *PD) Context() *Context { return pd.ctx }

func (pd *PD) handle(op string) (handle, error) {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	if pd.h == nil {
		return nil, fmt.Errorf("%s: %w", op, ErrClosed)
	}
	return pd.h, nil
}

func (pd *PD) adopt(c closer) {
	pd.mu.Lock()
	pd.children = append(pd.children, c)
	pd.mu.Unlock()
}

// Close closes the PD's QPs and memory regions still open, in that order,
// then deallocates it (ibv_dealloc_pd). Safe to call more than once.
//
// Errors: those of the children's Close, and the errno of ibv_dealloc_pd
// (EBUSY while something of it is still in use).
func (pd *PD) Close() error {
	pd.mu.Lock()
	h := pd.h
	kids := pd.children
	pd.children = nil
	pd.mu.Unlock()
	if h == nil {
		return nil
	}
	var errs []error
	for _, pass := range []bool{true, false} { // QPs first, then MRs
		for _, k := range kids {
			if _, isQP := k.(*QP); isQP == pass {
				errs = append(errs, k.Close())
			}
		}
	}
	pd.mu.Lock()
	pd.h = nil
	pd.mu.Unlock()
	if err := impl.deallocPD(h); err != nil {
		errs = append(errs, fmt.Errorf("ibv_dealloc_pd: %w", err))
	}
	return errors.Join(errs...)
}

// MR is a registered memory region (ibv_reg_mr) over a Region. It keeps its
// PD and its Region alive; Close deregisters it (the Region stays mapped).
type MR struct {
	pd  *PD
	reg *Region

	mu         sync.Mutex
	h          handle
	lkey, rkey uint32
}

// RegMR registers all of r with the device. Only mmap'd memory (a Region)
// can be registered: never the Go heap, which the garbage collector may
// move or free while the device writes into it.
//
// Errors: ENOMEM, EINVAL, EFAULT (the errno of ibv_reg_mr), ErrClosed for a
// closed PD or Region.
func (pd *PD) RegMR(r *Region, access Access) (*MR, error) {
	return pd.regMR(r, 0, -1, access)
}

// RegMRRange registers n bytes of r from off, populating them first (a
// Region from ReserveRegion is not): a connection registers the parts of
// its memory it grows into, one MR each.
//
// Errors: as RegMR's; EINVAL for a range outside r.
func (pd *PD) RegMRRange(r *Region, off, n int, access Access) (*MR, error) {
	if n <= 0 {
		return nil, fmt.Errorf("ibv_reg_mr: %d bytes: %w", n, unix.EINVAL)
	}
	return pd.regMR(r, off, n, access)
}

// regMR registers n bytes of r from off (n < 0: all of r, as mapped,
// which a populated Region needs no help with; else populated first).
func (pd *PD) regMR(r *Region, off, n int, access Access) (*MR, error) {
	h, err := pd.handle("ibv_reg_mr")
	if err != nil {
		return nil, err
	}
	buf := r.Bytes()
	if buf == nil {
		return nil, fmt.Errorf("ibv_reg_mr: region: %w", ErrClosed)
	}
	if n >= 0 {
		if off < 0 || off+n > len(buf) {
			return nil, fmt.Errorf("ibv_reg_mr: %d bytes at %d of a %d-byte region: %w", n, off, len(buf), unix.EINVAL)
		}
		buf = buf[off : off+n]
		populate(buf)
	}
	mh, lkey, rkey, err := impl.regMR(h, buf, access)
	if err != nil {
		return nil, fmt.Errorf("ibv_reg_mr %d bytes at %d: %w", len(buf), max(off, 0), err)
	}
	mr := &MR{pd: pd, reg: r, h: mh, lkey: lkey, rkey: rkey}
	pd.adopt(mr)
	return mr, nil
}

// LKey and RKey are the region's keys.
func (mr *MR) LKey() uint32 { return mr.lkey }

// RKey is the key a peer uses for RDMA to the region.
func (mr *MR) RKey() uint32 { return mr.rkey }

// Close deregisters the region (ibv_dereg_mr). Safe to call more than once.
//
// Errors: the errno of ibv_dereg_mr.
func (mr *MR) Close() error {
	mr.mu.Lock()
	h := mr.h
	mr.h = nil
	mr.mu.Unlock()
	if h == nil {
		return nil
	}
	if err := impl.deregMR(h); err != nil {
		return fmt.Errorf("ibv_dereg_mr: %w", err)
	}
	return nil
}
