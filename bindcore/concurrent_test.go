//go:build linux

package bindcore

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// Many goroutines create, bind, look up and close sockets of one Binder
// while another closes the Binder: every call answers (a bind, or a spec
// error), nothing races (go test -race), nothing is left open.
func TestConcurrentSockets(t *testing.T) {
	testutil.CheckFDs(t)
	b, err := Open(Options{RegistryDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("127.0.0.1")
	eps, _ := b.cache.resolve(addr, false)
	if len(eps) == 1 { // an RDMA host: bind a served address instead
		addr = eps[0].Addr
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				s, err := b.Socket(AFInet)
				if err != nil {
					if code, _ := wsa.CodeOf(err); code != wsa.WSAENOTSOCK {
						t.Errorf("Socket: %v", err)
					}
					return
				}
				err = s.BindAddrPort(netip.AddrPortFrom(addr, 0))
				if code, ok := wsa.CodeOf(err); err != nil && !ok {
					t.Errorf("Bind: %v", err)
				} else if err != nil && code != wsa.WSAENETDOWN && code != wsa.WSAEADDRNOTAVAIL && code != wsa.WSAENOTSOCK {
					t.Errorf("Bind: %v", err)
				}
				b.Lookup(s.Handle())
				s.Endpoint()
				s.Close()
				s.Close()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			b.Registry().List()
		}
	}()
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// In the guest: goroutines bind one address and port at once and each
// holds its own binding (the spec's sharing, within a process).
func TestDeviceConcurrentShare(t *testing.T) {
	addr := guestAddr(t)
	warmUp(t, rdmaAddrs(t))
	testutil.CheckFDs(t)
	b := openBinder(t)
	ap := netip.AddrPortFrom(addr, freePort(t, addr))
	const n = 8
	socks := make([]*Socket, n)
	var wg sync.WaitGroup
	for i := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := b.Socket(AFInet)
			if err == nil {
				err = s.BindAddrPort(ap)
			}
			if err != nil {
				t.Errorf("goroutine %d: %v", i, err)
			}
			socks[i] = s
		}()
	}
	wg.Wait()
	recs, err := b.Registry().List()
	if err != nil || len(recs) != n {
		t.Fatalf("registry lists %d records (%v), want %d", len(recs), err, n)
	}
	for _, s := range socks {
		if ep, err := s.Endpoint(); err != nil || ep.Local != ap || ep.Device == "" {
			t.Errorf("endpoint %+v %v", ep, err)
		}
		s.Close()
	}
	b.Close()
}
