package shadow

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/testutil"
)

const helperEnv = "RDMABIND_SHADOW_HELPER"

// TestMain lets the test binary act as a helper process: with helperEnv set
// to an address it binds a shadow there and exits with the bind's errno.
func TestMain(m *testing.M) {
	if ap := os.Getenv(helperEnv); ap != "" {
		s, err := Bind(netip.MustParseAddrPort(ap))
		var errno unix.Errno
		switch {
		case err == nil:
			s.Close()
			os.Exit(0)
		case errors.As(err, &errno):
			os.Exit(int(errno))
		}
		os.Exit(255)
	}
	os.Exit(m.Run())
}

func mustBind(t *testing.T, ap string) *Socket {
	t.Helper()
	s, err := Bind(netip.MustParseAddrPort(ap))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPortZeroAndSharing(t *testing.T) {
	testutil.CheckFDs(t)
	a := mustBind(t, "127.0.0.1:0")
	port := a.Addr().Port()
	if port == 0 {
		t.Fatal("port 0 bound to port 0")
	}
	b := mustBind(t, fmt.Sprintf("127.0.0.1:%d", port))
	ca, err1 := a.Cookie()
	cb, err2 := b.Cookie()
	if err1 != nil || err2 != nil || ca == 0 || ca == cb {
		t.Fatalf("cookies %d %d (%v %v): want distinct nonzero", ca, cb, err1, err2)
	}
	// One listener and one bound socket of the same reuseport group.
	if err := a.Listen(16); err != nil {
		t.Fatal(err)
	}
	if err := b.Listen(16); err != nil {
		t.Fatalf("second listener of the group: %v", err)
	}
	a.Close()
	b.Close()
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := a.Listen(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Listen after Close: %v", err)
	}
}

// A plain TCP program (Go's net.Listen: SO_REUSEADDR, no SO_REUSEPORT) cannot
// take the port while a shadow holds it, bound or listening, and can after.
func TestPlainTCPBlocked(t *testing.T) {
	for _, listen := range []bool{false, true} {
		for _, ap := range []string{"127.0.0.1:0", "[::1]:0", "0.0.0.0:0"} {
			t.Run(fmt.Sprintf("%s/listen=%v", ap, listen), func(t *testing.T) {
				s, err := Bind(netip.MustParseAddrPort(ap))
				if err != nil {
					if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.EAFNOSUPPORT) {
						t.Skipf("no %s here: %v", ap, err)
					}
					t.Fatal(err)
				}
				if listen {
					if err := s.Listen(8); err != nil {
						t.Fatal(err)
					}
				}
				addr := s.Addr().String()
				network := "tcp4"
				if s.Addr().Addr().Is6() {
					network = "tcp6"
				}
				if l, err := net.Listen(network, addr); err == nil {
					l.Close()
					t.Fatalf("net.Listen(%s) succeeded while the shadow holds it", addr)
				} else if !errors.Is(err, unix.EADDRINUSE) {
					t.Fatalf("net.Listen(%s): %v, want EADDRINUSE", addr, err)
				}
				s.Close()
				l, err := net.Listen(network, addr)
				if err != nil {
					t.Fatalf("net.Listen(%s) after Close: %v", addr, err)
				}
				l.Close()
			})
		}
	}
}

// An IPv6 shadow is V6ONLY: it does not hold the IPv4 port.
func TestIPv6OnlyLeavesIPv4(t *testing.T) {
	s, err := Bind(netip.MustParseAddrPort("[::]:0"))
	if err != nil {
		t.Skipf("no IPv6: %v", err)
	}
	defer s.Close()
	l, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", s.Addr().Port()))
	if err != nil {
		t.Fatalf("IPv4 port taken by an IPv6 shadow: %v", err)
	}
	l.Close()
}

// Shadows are plain TCP, never MPTCP.
func TestProtocolIsTCP(t *testing.T) {
	s := mustBind(t, "127.0.0.1:0")
	err := s.Control(func(fd int) error {
		p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
		if err == nil && p != unix.IPPROTO_TCP {
			return fmt.Errorf("SO_PROTOCOL %d, want IPPROTO_TCP", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNotAnAddressOfThisHost(t *testing.T) {
	_, err := Bind(netip.MustParseAddrPort("192.0.2.77:5000"))
	if !errors.Is(err, unix.EADDRNOTAVAIL) {
		t.Fatalf("got %v, want EADDRNOTAVAIL", err)
	}
}

// Another user cannot join the port, in another process; the same user can.
func TestOtherUIDRefused(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	s := mustBind(t, "127.0.0.1:0")
	run := func(uid uint32) int {
		err := testutil.HelperCommand(t, uid, helperEnv+"="+s.Addr().String()).Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	if rc := run(0); rc != 0 {
		t.Fatalf("same uid in another process: exit %d (errno %v)", rc, unix.Errno(rc))
	}
	if rc := run(65534); rc != int(unix.EADDRINUSE) {
		t.Fatalf("uid 65534: exit %d, want EADDRINUSE (%d)", rc, int(unix.EADDRINUSE))
	}
}

func TestDup(t *testing.T) {
	s := mustBind(t, "127.0.0.1:0")
	if err := s.Listen(4); err != nil {
		t.Fatal(err)
	}
	f, err := s.Dup()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	if got := strconv.Itoa(int(s.Addr().Port())); got == "0" {
		t.Fatal("port 0")
	}
}
