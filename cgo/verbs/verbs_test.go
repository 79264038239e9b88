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
		st   WCStatus
		want error
	}{
		{WCFlushErr, unix.ECANCELED},
		{WCRetryExcErr, unix.ETIMEDOUT},
		{WCRNRRetryExcErr, unix.ETIMEDOUT},
		{WCLocProtErr, unix.EIO},
	} {
		err := WC{Status: c.st, ID: 3}.Err()
		if !errors.Is(err, c.want) {
			t.Errorf("status %v: %v does not match %v", c.st, err, c.want)
		}
	}
	if (WC{}).Err() != nil {
		t.Error("success is an error")
	}
	if MTU(3).Bytes() != 1024 || MTU(0).Bytes() != 0 {
		t.Error("MTU bytes")
	}
}

// The names are the libibverbs enum values' (their numbers are checked
// against the C header at compile time), and the error says which.
func TestWCNames(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{WCSuccess.String(), "IBV_WC_SUCCESS"},
		{WCFlushErr.String(), "IBV_WC_WR_FLUSH_ERR"},
		{WCLocAccessErr.String(), "IBV_WC_LOC_ACCESS_ERR"},
		{WCTMRndvIncomplete.String(), "IBV_WC_TM_RNDV_INCOMPLETE"},
		{WCStatus(99).String(), "WCStatus(99)"},
		{WCRecv.String(), "IBV_WC_RECV"},
		{WCRecvRDMAImm.String(), "IBV_WC_RECV_RDMA_WITH_IMM"},
		{WCOpcode(77).String(), "WCOpcode(77)"},
		{WC{Status: WCFlushErr, ID: 3}.Err().Error(), "work completion 3: IBV_WC_WR_FLUSH_ERR"},
	} {
		if c.got != c.want {
			t.Errorf("%q, want %q", c.got, c.want)
		}
	}
	if (WC{Flags: WCWithImm | WCGRH}).HasImm() != true || (WC{Flags: WCGRH}).HasImm() {
		t.Error("HasImm")
	}
	if WCRecvRDMAImm&WCRecv == 0 || WCRDMAWrite&WCRecv != 0 {
		t.Error("WCRecv is not the receive bit")
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
