// Package rdma is the host's RDMA topology in pure Go, and the resolution
// of an IP address to the RDMA device, port and GID that a bind of it uses.
//
// WSPBind binds a socket to the address of a NIC that the SAN provider
// serves, and answers WSAEADDRNOTAVAIL for any other address. This package
// decides which addresses those are, before librdmacm is asked: package
// bindcore calls it, and turns its errors (see Errors below) into the
// spec's, with the address, the netdev and the port named in them, and the CLI's `devices` and `resolve`
// commands print what it finds. The bind itself is rdma_bind_addr's, in
// cgo/rdmacm; the choice described here follows the kernel's rdma_cm
// (drivers/infiniband/core/cma.c), so that what Resolve reports is what the
// bound cm_id gets, except where noted.
//
// # Topology
//
// Sysfs reads everything below a root: Root "/" reads the live system, a
// directory laid out like / reads a fixture (see testdata/README.md).
// ReadTopology returns the devices of /sys/class/infiniband, their ports
// (state, physical state, link layer InfiniBand or Ethernet) and GID tables
// (the valid entries, each with its GID, its type IB, RoCE v1 or RoCE v2,
// and its netdev), which netdevs the ports serve, and whether
// /dev/infiniband/rdma_cm exists. Which port serves a netdev comes from the
// GID entries' ndevs on Ethernet (RoCE, VLANs and bonds included: their
// entries name the VLAN or the bond), from the netdev's parent device and
// dev_port on InfiniBand (IPoIB: ib0's device/infiniband/mlx5_2 in
// /sys/class/net), and from its lower devices (lower_*: a VLAN's parent, a bond's
// slaves). A Topology is a snapshot: read a new one to see hot-plugged
// devices and the GID entries of new addresses.
//
// The netdev holding an address comes from an AddrSource: LiveAddrs takes a
// snapshot of the host's interfaces, ReadAddrTable reads a fixture's list.
//
// # Counters
//
// Sysfs.ReadPortCounters reads a port's counters, Counters: ports/<n>/counters
// (the InfiniBand PMA counters: packets, data, errors) and ports/<n>/hw_counters
// (the driver's: retransmits, out-of-sequence packets, congestion notification
// packets; rxe's sent_pkts and rcvd_pkts). ReadCounters and AddCounters read
// every port of a Topology (the CLI's `devices` shows them), DiffCounters and
// Counters.Sub what moved between two readings (the benchmark reports the
// deltas over its run), Counters.Trouble the counters that say something went
// wrong.
//
// # rdmamap
//
// github.com/Mellanox/rdmamap reads the counters (GetRdmaSysfsStats,
// GetRdmaSysfsHwStats), and answers the netdev-to-device question on the live
// system. It is called from one file, rdmamap.go, under one lock: rdmamap's
// paths are package variables, and ReadPortCounters points its RdmaClassDir
// at the Sysfs root for the call, so that the fixtures' counters are read by
// rdmamap too. DeviceForNetdev turns its empty answers into errors, and
// CheckLiveMapping checks that rdmamap and the sysfs reader agree on the live
// host (a test does, in the SoftRoCE guest). Resolution does not depend on
// it: the GID tables are the sysfs reader's.
//
// # How resolution chooses
//
// NewResolver indexes a Topology and an AddrSource once; Resolve then works
// in memory, reading no file (about 100-200 ns and one allocation, the
// result). The package-level Resolve reads both afresh on every call.
//
//  1. Without /dev/infiniband/rdma_cm there is no RDMA subsystem:
//     ErrNoRDMA, whatever the address.
//  2. The wildcard, 0.0.0.0 or :: (or ::ffff:0.0.0.0): one Endpoint per
//     ACTIVE port of every device, with GIDIndex -1 and no GID, because a
//     wildcard bind holds no GID: each connection uses the GID of the address
//     its peer reached. No ACTIVE port at all is ErrPortDown (ErrNoDevice
//     when there is no device).
//  3. An IPv4-mapped IPv6 address is resolved as the IPv4 address.
//  4. Loopback (127.0.0.0/8, ::1) is refused, see below.
//  5. The AddrSource names the netdev that holds the address; an address no
//     interface holds is ErrAddrNotLocal "<ip> is not an address of this
//     host". The zone of a link-local IPv6 address picks the interface;
//     without one, the first interface holding it.
//  6. A netdev no RDMA port serves is ErrAddrNotServed naming the netdev
//     (and listing those that are served).
//  7. RoCE (Ethernet ports): the GID entry whose GID is the address as a GID
//     (::ffff:a.b.c.d for IPv4, the IPv6 address itself) and whose ndev is
//     that netdev. RoCE v2 is preferred to v1, whatever their indexes (mlx5
//     puts v1 at the even index and v2 at the odd one), as the kernel uses
//     the port's default GID type, v2 where the port supports it. v1 is
//     taken only when the port has no v2 entry for the address (the kernel
//     would fail there unless the port's default type is v1). A link-local GID is never
//     chosen for a global address: the GID must equal the address, and the
//     check is also made explicitly. A served netdev whose port has no entry
//     for the address (an address added a moment ago) is ErrAddrNotServed.
//  8. InfiniBand (IPoIB): the port behind the netdev, GID index 0, the port
//     GID. Its GID is the subnet prefix (fe80::/64 by default) and the port
//     GUID, not derived from the IP: the link-local rule of RoCE does not
//     apply.
//  9. Among candidates, an ACTIVE port wins; if the chosen port is not
//     ACTIVE (DOWN, INIT, ARMED), ErrPortDown names the port, its state and
//     its physical state.
//
// # Loopback
//
// rdma_cm treats 127.0.0.0/8 and ::1 as the wildcard (cma_any_addr is
// cma_zero_addr or cma_loopback_addr): rdma_bind_addr(127.0.0.1) binds no
// device, and a listen on it accepts connections to every address of every
// RDMA port. A caller binding 127.0.0.1 means "this host only", the
// opposite, and under WSPBind loopback never reaches a SAN provider at all
// (the switch keeps it on TCP/IP): no NIC the provider serves holds it.
// Resolve therefore answers ErrAddrNotServed for loopback addresses, naming
// rdma_cm's behaviour and the wildcard to use instead, so that a layer built
// on it never hands a loopback address to rdma_bind_addr.
//
// # Errors
//
// The package returns its own sentinels, each matching an errno too, and
// knows nothing of the spec's WSA codes: package bindcore alone maps them
// (bindcore/errmap.go; docs/errors.md has the table). Every error names the
// operation and the input ("rdma: resolve 10.0.0.9: ...", "rdma: topology
// /sys/class/infiniband/rxe0/ports/1/state: ..."), the sentinel's text, and
// what was wrong and what was expected:
//
//   - ErrNoRDMA (errors.Is unix.ENETDOWN): no rdma_cm device node.
//   - ErrNoDevice (unix.ENETDOWN): the wildcard on a host with no RDMA
//     device.
//   - ErrPortDown (unix.ENETDOWN): no ACTIVE port for the wildcard; the port
//     serving the address is not ACTIVE (the address is the host's and
//     served, but the link is not usable).
//   - ErrTopology (unix.ENETDOWN): from ReadTopology, a sysfs file that
//     cannot be read or holds text sysfs never writes (the device went
//     away).
//   - ErrAddrNotLocal (unix.EADDRNOTAVAIL): the zero netip.Addr; an address
//     not on this host.
//   - ErrAddrNotServed (unix.EADDRNOTAVAIL): a loopback address; an address
//     on a netdev no RDMA device serves; no GID entry for it.
package rdma
