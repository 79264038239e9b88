package verbs

import (
	"errors"
	"testing"

	"github.com/rdmabind/rdmabind/cgo/rdmacm"
	"golang.org/x/sys/unix"
)

func TestRegion(t *testing.T) {
	r, err := NewRegion(100)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Bytes()) != unix.Getpagesize() || r.Addr(0) == 0 || r.Addr(8)-r.Addr(0) != 8 {
		t.Fatalf("region of %d bytes at %#x", len(r.Bytes()), r.Addr(0))
	}
	r.Bytes()[99] = 1
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil || r.Bytes() != nil || r.Addr(0) != 0 {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := NewRegion(0); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("NewRegion(0): %v", err)
	}
}

func TestWCError(t *testing.T) {
	for _, c := range []struct {
		st   uint32
		want error
	}{{WCFlushErr, unix.ECANCELED}, {12, unix.ETIMEDOUT}, {13, unix.ETIMEDOUT}, {4, unix.EIO}} {
		err := WC{Status: c.st, ID: 3}.Err()
		if !errors.Is(err, c.want) {
			t.Errorf("status %d: %v does not match %v", c.st, err, c.want)
		}
	}
	if (WC{}).Err() != nil {
		t.Error("success is an error")
	}
	if MTU(3).Bytes() != 1024 || MTU(0).Bytes() != 0 {
		t.Error("MTU bytes")
	}
}

// Without an RDMA device (or without cgo) OpenDevice fails with an errno,
// never a panic.
func TestOpenDeviceMissing(t *testing.T) {
	_, err := OpenDevice("no-such-device0")
	if err == nil {
		t.Fatal("OpenDevice of a missing device succeeded")
	}
	if impl == nil && !errors.Is(err, ErrNotSupported) {
		t.Fatalf("without cgo: %v, want ErrNotSupported", err)
	}
	if impl != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENOSYS) {
		t.Logf("OpenDevice: %v", err)
	}
}

// A nil *rdmacm.ID is a closed one, never a crash (a value of another
// type no longer compiles).
func TestContextOfNilID(t *testing.T) {
	_, err := ContextOf(nil)
	if impl == nil {
		if !errors.Is(err, ErrNotSupported) {
			t.Fatalf("without cgo: %v, want ErrNotSupported", err)
		}
		return
	}
	if !errors.Is(err, rdmacm.ErrClosed) {
		t.Fatalf("ContextOf(nil): %v, want rdmacm.ErrClosed", err)
	}
}
