package qp

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
)

// Remote peers that are not rdmabind, or stop halfway: the listener's side
// of the TCP rendezvous never crashes or blocks on them, and they cost it
// bounded memory and time.

// FuzzRendezvous: whatever a peer sends on a TCP connection to a listener
// (at most 4 KiB, the listener reads 57 bytes), and whether it then closes
// its side, half-closes it or stays silent, the listener's setup ends
// without a panic by its deadline (100 ms) and frees what it opened.
func FuzzRendezvous(f *testing.F) {
	good := (&hello{mode: ModeTCP, port: 9, qpn: 1, recvDepth: 8, chunk: 64}).marshal()
	f.Add(append(append([]byte(nil), good...), readyByte), uint8(0))
	f.Add(good, uint8(1))
	f.Add(good[:20], uint8(2))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint8(0))
	f.Add([]byte{}, uint8(1))
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	srv := ln.Addr().(*net.TCPAddr).AddrPort()
	f.Fuzz(func(t *testing.T, in []byte, end uint8) {
		if len(in) > 4096 {
			in = in[:4096]
		}
		n := newFakeNet(t)
		tc, err := net.Dial("tcp4", srv.String())
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		tc.Write(in)
		switch end % 3 {
		case 0:
			tc.Close() // disconnects halfway
		case 1:
			tc.(*net.TCPConn).CloseWrite()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		t0 := time.Now()
		c, err := acceptRendezvous(ctx, bindcore.Endpoint{Local: srv}, sc, small().withDefaults(), n.opener("listener", nil))
		if d := time.Since(t0); d > 2*time.Second {
			t.Fatalf("the setup took %v (deadline 100 ms)", d)
		}
		if err == nil {
			c.Close()
			return
		}
		if opened, freed := n.opened("listener"), n.closedCount("listener"); opened != freed {
			t.Fatalf("failed setup (%v): %d QPs opened, %d freed", err, opened, freed)
		}
	})
}

// rawDial opens a TCP connection to ap with raw system calls (no Go
// objects on the heap), so that the heap measured is the listener's.
func rawDial(t *testing.T, ap netip.AddrPort) int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	return fd
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// TestListenerSurvivesHalfOpenConnections: 1,000 TCP connections to a
// Listener that never finish the rendezvous (silent, half a hello, a whole
// hello and then silence, or a disconnect halfway) leave at most
// MaxSetups setups running, bounded memory and goroutines, and real
// peers dialling meanwhile are still accepted at once.
func TestListenerSurvivesHalfOpenConnections(t *testing.T) {
	n := newFakeNet(t)
	ln, srv := loopbackListener(t)
	o := small().withDefaults()
	o.SetupTimeout = time.Minute // the half-open ones do not simply time out
	l := newListener(bindcore.Endpoint{Local: srv}, o)
	defer l.Close()
	next := func(ctx context.Context) (net.Conn, error) {
		stop := context.AfterFunc(ctx, func() { ln.Close() })
		defer stop()
		return ln.Accept()
	}
	var taken atomic.Int64
	l.wg.Add(1)
	go acceptLoop(l, "tcp", next, func(ctx context.Context, tc net.Conn) (*Conn, error) {
		taken.Add(1)
		return acceptRendezvous(ctx, l.ep, tc, l.opts, n.opener("listener", nil))
	})
	go func() { // SetupErrors is for diagnostics: drain it
		for range l.SetupErrors() {
		}
	}()
	before, g0 := heapInuse(), runtime.NumGoroutine()
	good := (&hello{mode: ModeTCP, port: 9, qpn: 1, recvDepth: 8, chunk: 64}).marshal()
	const N = 1000
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	t0 := time.Now()
	for i := range N {
		fd := rawDial(t, srv)
		switch i % 4 {
		case 0: // silent
		case 1:
			unix.Write(fd, good[:helloLen/2])
		case 2:
			unix.Write(fd, good)
		case 3:
			unix.Write(fd, good[:7])
			unix.Close(fd)
			continue
		}
		fds = append(fds, fd)
	}
	opened := time.Since(t0)
	eventually(t, 10*time.Second, "the listener taking in every connection", func() bool {
		return taken.Load() == N
	})
	time.Sleep(200 * time.Millisecond)
	after, g1 := heapInuse(), runtime.NumGoroutine()
	ctx := timeout(t, 10*time.Second)
	t1 := time.Now()
	for range 3 {
		c, err := dialRendezvous(ctx, bindcore.Endpoint{Local: freePort(t)}, srv, small().withDefaults(), n.opener("dialer", nil))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := l.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		mustSend(t, c, msg(1, 10))
		recvCheck(t, s, msg(1, 10))
	}
	real := time.Since(t1)
	running := l.setups.running()
	t.Logf("%d half-open connections opened in %v; listener: %d setups running (max %d), heap+stacks %+.1f KiB (%.1f KiB per setup), goroutines %+d, %d QPs opened; 3 real connections set up and accepted in %v",
		N, opened, running, o.MaxSetups, float64(int64(after)-int64(before))/1024, float64(int64(after)-int64(before))/1024/float64(o.MaxSetups), g1-g0, n.opened("listener"), real)
	if running > o.MaxSetups {
		t.Fatalf("%d setups running, max %d", running, o.MaxSetups)
	}
	if g1-g0 > o.MaxSetups+16 {
		t.Fatalf("%d more goroutines with %d half-open connections (max %d setups)", g1-g0, N, o.MaxSetups)
	}
	if d := int64(after) - int64(before); d > 8<<20 {
		t.Fatalf("the listener's heap and stacks grew by %d KiB", d>>10)
	}
	if real > 5*time.Second {
		t.Fatalf("3 real connections took %v", real)
	}
}
