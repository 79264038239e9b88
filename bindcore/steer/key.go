package steer

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// MaxGroups is how many steering groups one network namespace can hold at
// once: the size of the per-netns maps (the REUSEPORT_SOCKARRAY has two
// slots per group). Open fails with unix.ENOSPC beyond it.
const MaxGroups = 16384

// Key names a steering group: a reuseport group of one network namespace,
// address and port. (The kernel also separates groups by uid and bound
// device; the pin directory's mode 0700 keeps other uids out.)
type Key struct {
	NetNS uint64         // inode number of the network namespace
	Addr  netip.AddrPort // the listeners' bound address and port
}

// String returns "netns:[4026531840] 127.0.0.1:5000".
func (k Key) String() string {
	return fmt.Sprintf("netns:[%d] %s", k.NetNS, k.Addr)
}

// Name returns the group's directory name under the netns directory:
// "inet-127_0_0_1-5000", "inet6-::1-5000", "inet6-fe80::1%2-5000". bpffs
// refuses names with a dot, so dots become underscores; a zone is written
// as its interface index.
func (k Key) Name() string {
	a := k.Addr.Addr().Unmap()
	fam := "inet"
	if a.Is6() {
		fam = "inet6"
		if z := a.Zone(); z != "" {
			if _, err := strconv.ParseUint(z, 10, 32); err != nil {
				if ifi, err := net.InterfaceByName(z); err == nil {
					a = a.WithZone(strconv.Itoa(ifi.Index))
				}
			}
		}
	}
	name := fmt.Sprintf("%s-%s-%d", fam, a, k.Addr.Port())
	return strings.ReplaceAll(name, ".", "_")
}

func (k Key) check() error {
	switch {
	case k.NetNS == 0:
		return fmt.Errorf("key has no network namespace")
	case !k.Addr.IsValid():
		return fmt.Errorf("key has no address")
	case k.Addr.Port() == 0:
		return fmt.Errorf("key has port 0: use the bound port")
	}
	return nil
}

// Socket is a listening socket the steering acts on. *shadow.Socket is one;
// FD adapts a raw descriptor. Control runs f with the descriptor while it
// cannot be closed.
type Socket interface {
	Control(f func(fd int) error) error
}

// FD is a raw socket descriptor the caller owns, as a Socket.
type FD int

// Control runs f with fd.
func (fd FD) Control(f func(fd int) error) error { return f(int(fd)) }

// Status is what the group's maps say: which slot is designated, and the
// socket cookies (SO_COOKIE) of the sockets in the designated and standby
// slots, 0 for an empty slot.
type Status struct {
	Slot       uint32 // the designated slot, 0 or 1; the other is the standby slot
	Designated uint64 // cookie of the designated listener, 0 if none
	Standby    uint64 // cookie of the standby listener, 0 if none
}

// A Watch waits for the designated listener to go away. WatchProcess
// watches a process; the registry's wait on the designated record's lock is
// another.
type Watch interface {
	// Wait returns nil once the watched listener is gone, or ctx's error.
	Wait(ctx context.Context) error
	// Close releases the watch. It is safe to call more than once.
	Close() error
}
