package testutil

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/netns"
)

// NetNS is a network namespace of a test's own (as cilium/ebpf's
// testutils.NewNetNS): threads enter it through Do, never the test's own.
type NetNS struct {
	fd  int
	ino uint64
}

// NewNetNS makes a new network namespace (internal/netns.New), closed when
// the test ends. It skips without root (CAP_SYS_ADMIN), and fails inside
// the SoftRoCE guest instead.
func NewNetNS(tb testing.TB) *NetNS {
	tb.Helper()
	SkipUnlessRoot(tb)
	fd, err := netns.New()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		tb.Fatal(err)
	}
	return &NetNS{fd: fd, ino: st.Ino}
}

// FD is an fd of the namespace, valid until the test ends.
func (n *NetNS) FD() int { return n.fd }

// Inode is the namespace's inode number.
func (n *NetNS) Inode() uint64 { return n.ino }

// Do runs fn on a thread inside the namespace (internal/netns.Do), and
// returns fn's error or Do's.
func (n *NetNS) Do(fn func() error) error { return netns.Do(n.fd, fn) }
