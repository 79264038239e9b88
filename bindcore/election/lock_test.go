//go:build linux

package election

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/internal/ofdlock"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// The lock offsets: past any record, election, standby and rdma_cm locks
// apart, IPv4 and IPv6 in ranges of their own, an IPv4-mapped address the IPv4 one, zones
// dropped.
func TestListenLockOffsets(t *testing.T) {
	maxFile := registry.Header{Records: registry.MaxRecords, Groups: registry.IndexGroups(registry.MaxRecords)}.FileSize()
	aps := []string{"10.77.0.1:5000", "10.77.0.1:5001", "10.77.0.2:5000", "0.0.0.0:5000", "255.255.255.255:65535",
		"[fd77::1]:5000", "[fd77::1]:5001", "[::]:5000", "[fe80::1%eth0]:5000"}
	seen := map[int64]string{}
	for _, s := range aps {
		ap := netip.MustParseAddrPort(s)
		for _, k := range []lockKind{lockElect, lockStandby} {
			off := listenOffset(ap, k)
			if off < lockBase || off <= maxFile || off+1 < 0 {
				t.Errorf("%s kind %d: offset %#x out of the listen range", s, k, off)
			}
			if ap.Addr().Is4() != (off < lockV6Base) {
				t.Errorf("%s kind %d: offset %#x in the other family's range", s, k, off)
			}
			if prev, dup := seen[off]; dup {
				t.Errorf("%s kind %d and %s share offset %#x", s, k, prev, off)
			}
			seen[off] = fmt.Sprintf("%s/%d", s, k)
		}
		if f := flagOffset(ap.Port()); f >= lockV4Base || f < lockBase {
			t.Errorf("flag of %d at %#x", ap.Port(), f)
		}
		r := rdmaOffset(ap)
		if r < lockBase+rdmaShift || r+1 < 0 {
			t.Errorf("%s: rdma_cm lock at %#x out of its range", s, r)
		}
		if prev, dup := seen[r]; dup {
			t.Errorf("%s rdma_cm lock and %s share offset %#x", s, prev, r)
		}
		seen[r] = s + "/rdma"
	}
	mapped := netip.AddrPortFrom(netip.MustParseAddr("::ffff:10.77.0.1"), 5000)
	if listenOffset(mapped, lockElect) != listenOffset(netip.MustParseAddrPort("10.77.0.1:5000"), lockElect) {
		t.Error("an IPv4-mapped address has its own election")
	}
	if listenOffset(netip.MustParseAddrPort("[fe80::1%eth0]:5000"), lockElect) != listenOffset(netip.MustParseAddrPort("[fe80::1%eth1]:5000"), lockElect) {
		t.Error("zones make elections apart (the registry ignores them)")
	}
}

// The listen locks through separate open file descriptions of one registry
// file: one holder, probes see it, a waiter is granted the lock when the
// holder closes, a cancelled wait leaves no lock, thread or fd behind.
func TestListenLocks(t *testing.T) {
	netpollerUp()
	testutil.CheckFDs(t)
	reg, err := registry.Open(registry.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	open := func() *lockFile {
		l, err := openLockFile(reg)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, b, probe := open(), open(), open()
	defer probe.close()
	off := listenOffset(netip.MustParseAddrPort("127.0.0.1:7000"), lockElect)
	if ok, err := a.try(ofdlock.Write, off); !ok || err != nil {
		t.Fatalf("first try: %v %v", ok, err)
	}
	if ok, err := b.try(ofdlock.Write, off); ok || err != nil {
		t.Fatalf("second try while held: %v %v", ok, err)
	}
	if held, err := probe.held(off); !held || err != nil {
		t.Fatalf("probe: %v %v", held, err)
	}
	// The flag: shared by readers, seen by the probe.
	f := flagOffset(7000)
	for _, l := range []*lockFile{a, b} {
		if ok, err := l.try(ofdlock.Read, f); !ok || err != nil {
			t.Fatalf("flag: %v %v", ok, err)
		}
	}
	if held, _ := probe.held(f); !held {
		t.Fatal("flag not seen")
	}
	// A cancelled wait.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	if err := b.wait(ctx, off); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled wait: %v", err)
	}
	cancel()
	// A granted wait.
	granted := make(chan error, 1)
	go func() { granted <- b.wait(context.Background(), off) }()
	time.Sleep(10 * time.Millisecond)
	t0 := time.Now()
	a.close()
	if err := <-granted; err != nil {
		t.Fatal(err)
	}
	t.Logf("wait granted %v after the holder closed", time.Since(t0))
	if held, _ := probe.held(off); !held {
		t.Fatal("the waiter does not hold the lock")
	}
	b.close()
	if held, _ := probe.held(off); held {
		t.Fatal("lock held after every holder closed")
	}
	if held, _ := probe.held(f); held {
		t.Fatal("flag held after every holder closed")
	}
}

// netpollerUp makes the runtime open its netpoller's fds (epoll, eventfd),
// which it does on the first os.File, so that an fd count does not blame them
// on the test that happens to open the first file.
func netpollerUp() {
	if pr, pw, err := os.Pipe(); err == nil {
		pr.Close()
		pw.Close()
	}
}
