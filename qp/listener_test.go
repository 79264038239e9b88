package qp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
)

// testListener is a Listener with no accept loop, for the tests to start
// their own.
func testListener(t *testing.T) *Listener {
	t.Helper()
	l := newListener(bindcore.Endpoint{Local: netip.MustParseAddrPort("127.0.0.1:7470")}, (&Options{}).withDefaults())
	t.Cleanup(func() { l.Close() })
	return l
}

// TestSetupErrorsKeepsTheNewest: with nobody reading, SetupErrors holds
// the last 64 failed handshakes, the oldest dropped, as its doc says.
func TestSetupErrorsKeepsTheNewest(t *testing.T) {
	l := testListener(t)
	for i := range 70 {
		l.deliver(nil, fmt.Errorf("handshake %d failed", i))
	}
	var got []string
	for len(got) < 70 {
		select {
		case err := <-l.SetupErrors():
			got = append(got, err.Error())
			continue
		default:
		}
		break
	}
	if len(got) != 64 || got[0] != "handshake 6 failed" || got[63] != "handshake 69 failed" {
		t.Fatalf("SetupErrors kept %d: first %q, last %q; want 64, handshakes 6 to 69", len(got), got[0], got[len(got)-1])
	}
}

// TestAcceptLoopRetriesAfterTransientErrors: an accept that fails for a
// while (EMFILE, ENFILE, ECONNABORTED, ENOBUFS, ENOMEM, a timeout) does not
// end the Listener's accepting: the loop reports the error, backs off and
// accepts the next connection.
func TestAcceptLoopRetriesAfterTransientErrors(t *testing.T) {
	a, _, _, _, _ := fakePair(t, small(), small())
	transient := []error{
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", unix.EMFILE)},
		fmt.Errorf("accept: %w", unix.ENFILE),
		fmt.Errorf("accept: %w", unix.ECONNABORTED),
		fmt.Errorf("accept: %w", unix.ENOBUFS),
		fmt.Errorf("accept: %w", unix.ENOMEM),
		&net.OpError{Op: "accept", Net: "tcp", Err: os.ErrDeadlineExceeded},
	}
	l := testListener(t)
	var calls atomic.Int32
	next := func(ctx context.Context) (int, error) {
		i := int(calls.Add(1)) - 1
		if i < len(transient) {
			return 0, transient[i]
		}
		if i == len(transient) {
			return i, nil
		}
		<-ctx.Done()
		return 0, ctx.Err()
	}
	l.wg.Add(1)
	go acceptLoop(l, "tcp", next, func(_ context.Context, i int) (*Conn, error) { return a, nil })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := l.Accept(ctx)
	if err != nil || c != a {
		t.Fatalf("Accept after %d transient accept errors: %v, %v; want the next connection", len(transient), c, err)
	}
	if err := <-l.SetupErrors(); !errors.Is(err, unix.EMFILE) {
		t.Errorf("first error reported: %v, want EMFILE", err)
	}
}

// TestAcceptLoopBacksOff: an accept failing again and again is retried
// with growing pauses, not in a busy loop.
func TestAcceptLoopBacksOff(t *testing.T) {
	l := testListener(t)
	var calls atomic.Int32
	l.wg.Add(1)
	go acceptLoop(l, "tcp", func(ctx context.Context) (int, error) {
		calls.Add(1)
		return 0, fmt.Errorf("accept: %w", unix.EMFILE)
	}, func(context.Context, int) (*Conn, error) { return nil, errors.New("no") })
	time.Sleep(200 * time.Millisecond)
	// 5, 10, 20, 40, 80 ms: 5 or 6 tries in 200 ms.
	if n := calls.Load(); n < 2 || n > 8 {
		t.Fatalf("%d accepts in 200 ms of EMFILE, want a handful (pauses from 5 ms, doubling)", n)
	}
	start := time.Now()
	l.Close()
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Fatalf("Close took %v: the pause should end with the Listener", d)
	}
}

// TestAcceptLoopEndsWhenItsSocketCloses: an accept error that says the
// socket is closed or not listening ends the loop; so does Close.
func TestAcceptLoopEndsWhenItsSocketCloses(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("accept: %w", net.ErrClosed),
		wsa.New(wsa.WSAENOTSOCK, "accept", "0x1", "the socket was closed"),
		wsa.New(wsa.WSAEINVAL, "accept", "0x1", "the socket is not listening"),
	} {
		l := testListener(t)
		l.wg.Add(1)
		go acceptLoop(l, "tcp", func(ctx context.Context) (int, error) { return 0, err },
			func(context.Context, int) (*Conn, error) { return nil, nil })
		ended := make(chan struct{})
		go func() { l.wg.Wait(); close(ended) }()
		within(t, ended, 5*time.Second, fmt.Sprintf("accept loop after %v", err))
	}
	l := testListener(t)
	l.wg.Add(1)
	go acceptLoop(l, "tcp", func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() },
		func(context.Context, int) (*Conn, error) { return nil, nil })
	l.Close()
	if _, err := l.Accept(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Accept after Close: %v, want ErrClosed", err)
	}
}

// TestAcceptGivesUpWithItsContext: Accept with nothing to accept returns
// its context's error.
func TestAcceptGivesUpWithItsContext(t *testing.T) {
	l := testListener(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Accept(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Accept past its context's deadline: %v", err)
	}
}

// With one P a spin is a call into C that sysmon takes the P back from
// every tick: withDefaults turns it off then, and keeps it with two.
func TestSpinOffWithOneP(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, tc := range []struct {
		procs int
		spin  time.Duration
		want  time.Duration
	}{
		{1, 0, -1}, {1, time.Millisecond, -1}, {1, -1, -1},
		{2, 0, 50 * time.Microsecond}, {2, time.Millisecond, time.Millisecond}, {2, -1, -1},
	} {
		runtime.GOMAXPROCS(tc.procs)
		if got := (&Options{Spin: tc.spin}).withDefaults().Spin; got != tc.want {
			t.Errorf("GOMAXPROCS %d, Spin %v: %v, want %v", tc.procs, tc.spin, got, tc.want)
		}
	}
}
