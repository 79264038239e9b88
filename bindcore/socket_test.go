package bindcore

import (
	"errors"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

func asWSA(err error) (wsa.Code, bool) { return wsa.CodeOf(err) }

func openBinder(t testing.TB) *Binder {
	t.Helper()
	b, err := Open(Options{RegistryDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func wantCode(t testing.TB, err error, code wsa.Code) {
	t.Helper()
	if !errors.Is(err, &wsa.Error{Code: code}) || !errors.Is(err, code.Errno()) {
		t.Fatalf("got %v, want %s matching %v", err, code, code.Errno())
	}
}

// Closed, zero, nil and foreign handles are not sockets.
func TestNotSock(t *testing.T) {
	b := openBinder(t)
	other := openBinder(t)
	s, err := b.Socket(AFInet)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Lookup(s.Handle()); err != nil || got != s {
		t.Fatalf("Lookup of a live socket: %v %v", got, err)
	}
	_, err = other.Lookup(s.Handle())
	wantCode(t, err, wsa.WSAENOTSOCK) // foreign
	_, err = b.Lookup(0)
	wantCode(t, err, wsa.WSAENOTSOCK) // zero
	var nilSock *Socket
	wantCode(t, nilSock.Bind(make([]byte, 16)), wsa.WSAENOTSOCK)
	wantCode(t, (&Socket{}).BindAddrPort(netip.MustParseAddrPort("10.0.0.1:1")), wsa.WSAENOTSOCK)
	wantCode(t, nilSock.Close(), wsa.WSAENOTSOCK)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	wantCode(t, s.Bind(make([]byte, 16)), wsa.WSAENOTSOCK) // closed
	_, err = s.Endpoint()
	wantCode(t, err, wsa.WSAENOTSOCK)
	_, err = b.Lookup(s.Handle())
	wantCode(t, err, wsa.WSAENOTSOCK)
	b.Close()
	_, err = b.Socket(AFInet)
	wantCode(t, err, wsa.WSAENOTSOCK)
}

func TestSocketFamily(t *testing.T) {
	b := openBinder(t)
	_, err := b.Socket(Family(unix.AF_UNIX))
	wantCode(t, err, wsa.WSAEFAULT)
}

// The codec runs first: a bad name is WSAEFAULT whatever the host has.
func TestBindFaultBeforeDevice(t *testing.T) {
	b := openBinder(t)
	s, _ := b.Socket(AFInet6)
	wantCode(t, s.Bind(make([]byte, 16)), wsa.WSAEFAULT)
	wantCode(t, s.Bind(nil), wsa.WSAEFAULT)
	wantCode(t, s.BindAddrPort(netip.MustParseAddrPort("[fe80::1%eth0]:1")), wsa.WSAEFAULT)
	s4, _ := b.Socket(AFInet)
	wantCode(t, s4.BindAddrPort(netip.MustParseAddrPort("[fd77::1]:1")), wsa.WSAEFAULT)
}

// Without RDMA, Bind answers WSAENETDOWN and holds nothing.
func TestBindNoRDMA(t *testing.T) {
	if _, err := os.Stat("/dev/infiniband/rdma_cm"); err == nil {
		t.Skip("this host has RDMA")
	}
	testutil.CheckFDs(t)
	b := openBinder(t)
	s, _ := b.Socket(AFInet)
	wantCode(t, s.BindAddrPort(netip.MustParseAddrPort("127.0.0.1:5000")), wsa.WSAENETDOWN)
	if _, err := s.Endpoint(); !errors.Is(err, wsa.ErrInvalid) {
		t.Fatalf("Endpoint of an unbound socket: %v", err)
	}
	recs, err := b.Registry().List()
	if err != nil || len(recs) != 0 {
		t.Fatalf("registry after a failed bind: %v %v", recs, err)
	}
	b.Close()
}
