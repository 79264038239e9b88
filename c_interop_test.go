package rdmabind

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/internal/testutil"
)

// cEcho is examples/c's echo built against the installed C API
// (RDMABIND_C_ECHO, which make test sets: make capi-programs).
func cEcho(t *testing.T) string {
	t.Helper()
	testutil.SkipUnlessPeer(t)
	p := os.Getenv("RDMABIND_C_ECHO")
	if p == "" {
		t.Skip("set RDMABIND_C_ECHO to examples/c's echo built by make capi-programs (make test does)")
	}
	return p
}

// peerCServer starts the C echo server in guest 2 on port and waits until
// it accepts a connection.
func peerCServer(t *testing.T, bin string, port int) string {
	t.Helper()
	testutil.StartPeerCommand(t, bin, "-listen", testutil.PeerAddr(), fmt.Sprint(port))
	addr := net.JoinHostPort(testutil.PeerAddr(), fmt.Sprint(port))
	d := &Dialer{Timeout: 5 * time.Second}
	for end := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		c, err := d.DialContext(context.Background(), "rdma", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(end) {
			t.Fatalf("the C server on %s did not come up: %v", addr, err)
		}
	}
}

// runCClient runs the C echo client against addr (8 MB in odd chunks,
// checked by the client).
func runCClient(t *testing.T, bin, addr string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command(bin, "-connect", host, port, "8000000").CombinedOutput()
	if err != nil {
		t.Fatalf("C client against %s: %v: %s", addr, err, out)
	}
	t.Logf("C client: %s", bytes.TrimSpace(out))
}

// C and Go across two guests: a C client and a C server echo 8 MB written
// in odd chunk sizes; a C client against a Go server on rdmabind.Listen;
// a Go client (rdmabind.Dial) against the C server; every byte checked.
func TestDeviceCInterop(t *testing.T) {
	bin := cEcho(t)
	t.Run("C client, C server", func(t *testing.T) {
		addr := peerCServer(t, bin, 7620)
		runCClient(t, bin, addr)
	})
	t.Run("C client, Go server", func(t *testing.T) {
		_, addr := peerServer(t, "stream", 7621)
		runCClient(t, bin, addr)
	})
	t.Run("Go client, C server", func(t *testing.T) {
		addr := peerCServer(t, bin, 7622)
		c, err := Dial("rdma", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		const total = 8_000_000
		r := rand.New(rand.NewPCG(5, 6))
		out := make([]byte, 1<<20)
		in := make([]byte, 1<<20)
		for off := 0; off < total; {
			n := min(1+2*r.IntN(len(out)/2-1), total-off) // odd sizes
			pattern(out[:n], 7, off)
			if _, err := c.Write(out[:n]); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, in[:n]); err != nil {
				t.Fatalf("read at %d: %v", off, err)
			}
			if !bytes.Equal(in[:n], out[:n]) {
				t.Fatalf("bytes %d..%d came back different", off, off+n)
			}
			off += n
		}
		t.Logf("Go client: 8 MB echoed by the C server in odd chunks, checked")
	})
}
