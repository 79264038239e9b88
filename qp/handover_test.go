package qp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// A connect request that reaches a designated listener which closes before
// handing it out is rejected with "dial again" (bindcore.RetryRejectData),
// and Dial dials again and reaches the standby that took the port over:
// the dial succeeds, in more than one try. Without the retry reject it
// failed with ECONNREFUSED. In one guest, over its own address.
func TestDeviceDialRetriesThroughHandover(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	local := testutil.LocalAddr(t)
	b := openBinder(t)
	port := 7490
	srv := fmt.Sprintf("%s:%d", local, port)
	first := bindSocket(t, b, srv)
	if err := first.Listen(16); err != nil {
		t.Fatal(err)
	}
	if st, _ := first.ListenState(); st.RoleName != "designated" {
		t.Fatalf("first listener is %s, want designated", st.RoleName)
	}
	second := bindSocket(t, b, srv)
	if err := second.Listen(16); err != nil {
		t.Fatal(err)
	}
	// The first listener takes no request out of its queue (no
	// qp.Listener): the dial waits there until the first one closes.
	client := bindSocket(t, b, local+":0")
	done := make(chan dialResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := Dial(ctx, client, netip.MustParseAddrPort(srv), nil)
		done <- dialResult{c, err}
	}()
	// The request is queued at the first listener once rdma_cm routed
	// it: wait for it there, without taking it.
	deadline := time.Now().Add(20 * time.Second)
	for first.QueuedRDMA() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the connect request never reached the first listener")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := second.WaitDesignated(ctx); err != nil {
		t.Fatalf("the standby did not take over: %v", err)
	}
	c := echoOneAfterRetries(t, second, "second", done, "the request was not rejected with dial-again")
	t.Logf("Dial reached the standby after %d tries", c.Tries())
}

// echoOneAfterRetries serves one echo connection on s (listening) and
// checks the dial that done reports: it succeeded, in more than one try,
// and echoes. why says what a single try would mean.
func echoOneAfterRetries(t *testing.T, s *bindcore.Socket, name string, done <-chan dialResult, why string) *Conn {
	t.Helper()
	l, err := NewListener(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		if c, err := l.Accept(context.Background()); err == nil {
			echo(c, name)
		}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	if r.c.Tries() < 2 {
		t.Fatalf("Dial made %d tries: %s", r.c.Tries(), why)
	}
	echoCheck(t, r.c, 3, 64, 1)
	return r.c
}

// dialResult is what a Dial in the background returned.
type dialResult struct {
	c   *Conn
	err error
}

// A connect request that finds no listener at all (reject reason 8: the
// gap between a closing listener's id and its successor's rdma_listen)
// is dialled again for Options.RefusedRetry: a Dial started 150 ms before
// anything listens on the port succeeds, in more than one try. With
// RefusedRetry negative the same dial is refused at its first try.
func TestDeviceDialRidesOverNoListener(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	local := testutil.LocalAddr(t)
	b := openBinder(t)
	srv := fmt.Sprintf("%s:%d", local, 7491)
	server := bindSocket(t, b, srv)
	client := bindSocket(t, b, local+":0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t0 := time.Now()
	_, err := Dial(ctx, client, netip.MustParseAddrPort(srv), &Options{RefusedRetry: -1})
	if !errors.Is(err, unix.ECONNREFUSED) || !errors.As(err, new(*refusedError)) {
		t.Fatalf("Dial with RefusedRetry -1 where nothing listens: %v, want a refusal for want of a listener", err)
	}
	t.Logf("with RefusedRetry -1: refused in %v", time.Since(t0))

	done := make(chan dialResult, 1)
	t0 = time.Now()
	go func() {
		c, err := Dial(ctx, client, netip.MustParseAddrPort(srv), nil)
		done <- dialResult{c, err}
	}()
	time.Sleep(150 * time.Millisecond)
	if err := server.Listen(16); err != nil {
		t.Fatal(err)
	}
	c := echoOneAfterRetries(t, server, "late", done, "it was never refused, the test did not test")
	t.Logf("Dial reached the listener %v after it started, in %d tries", time.Since(t0), c.Tries())
}
