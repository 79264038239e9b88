package rdma

import (
	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/sentinel"
)

// Sentinels of this package. Every error of Resolver.Resolve, ReadTopology,
// CheckRDMACM and DeviceForNetdev wraps exactly one of them, names the
// operation and the input (an address, a file, a netdev) and says what was
// expected: "rdma: resolve 10.0.0.9: not on this host: no network interface
// holds 10.0.0.9 (expected ...)". Each sentinel also matches its errno, so errors.Is(err,
// ErrNoRDMA) and errors.Is(err, unix.ENETDOWN) are both true. The spec
// (WSA) code of each is bindcore's business (bindcore/errmap.go).
var (
	// ErrNoRDMA: no RDMA subsystem, /dev/infiniband/rdma_cm is absent.
	// Matches unix.ENETDOWN.
	ErrNoRDMA error = sentinel.New("no RDMA subsystem", unix.ENETDOWN)

	// ErrNoDevice: the wildcard was resolved on a host with no RDMA device.
	// Matches unix.ENETDOWN.
	ErrNoDevice error = sentinel.New("no RDMA device", unix.ENETDOWN)

	// ErrTopology: a sysfs file that every RDMA device or port has cannot
	// be read (the device went away while it was read) or holds text sysfs
	// never writes. Matches unix.ENETDOWN.
	ErrTopology error = sentinel.New("RDMA topology unreadable", unix.ENETDOWN)

	// ErrPortDown: the RDMA port serving the address is not ACTIVE, or for
	// the wildcard no port is. Matches unix.ENETDOWN.
	ErrPortDown error = sentinel.New("RDMA port not ACTIVE", unix.ENETDOWN)

	// ErrAddrNotLocal: the address is not an address of this host (no
	// network interface holds it), or is no address at all (the zero
	// netip.Addr); for DeviceForNetdev, no network interface has the name.
	// Matches unix.EADDRNOTAVAIL.
	ErrAddrNotLocal error = sentinel.New("not on this host", unix.EADDRNOTAVAIL)

	// ErrAddrNotServed: the address is the host's, but no RDMA device
	// serves it: a loopback address, an address on a netdev no RDMA port
	// serves, or one whose port has no GID entry for it yet; for
	// DeviceForNetdev, rdmamap finds no device for the netdev. Matches
	// unix.EADDRNOTAVAIL.
	ErrAddrNotServed error = sentinel.New("not served by an RDMA device", unix.EADDRNOTAVAIL)
)
