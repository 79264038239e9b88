// Package doctor checks a host for what most often keeps RDMA from
// working, and says what is wrong and how to fix it: the CLI's `rdmabind
// doctor` prints its Report.
//
// The checks (Checks lists them, in order) are data: each has a name and a
// function of Facts, what was found about the host. LiveFacts gathers them
// from the running system (sysfs, the interfaces' addresses, the memlock
// limit, the rdma_cm device node, `rdma system`, the process's network
// namespace and capabilities, the registry directory); FixtureFacts gives
// those of a sysfs fixture (package rdma's testdata) on a healthy host, which
// tests change one fact at a time to see each check fail.
//
// What is checked:
//
//   - devices: RDMA devices exist (/sys/class/infiniband).
//   - port DEV/N: each port is ACTIVE; a DOWN port's physical state says
//     whether the link or the cable is at fault, INIT on InfiniBand means no
//     subnet manager.
//   - gid ADDR: for each address of this namespace's interfaces (or the one
//     asked about), the device, port and GID index a bind would use and why
//     (package rdma's resolution: RoCE v2 preferred to v1, never the
//     link-local GID for a routed address); an address on an RDMA netdev
//     with no GID entry is explained (a namespace whose interfaces are not
//     those the GID tables name, as in a container under the shared RDMA
//     namespace mode, or an address added a moment ago).
//   - memlock: RLIMIT_MEMLOCK against what a connection registers
//     (MemlockPerConn), unless CAP_IPC_LOCK lifts it.
//   - rdma_cm: /dev/infiniband/rdma_cm exists, is a character device, and
//     this process may read and write it.
//   - netns: the RDMA subsystem's namespace mode (shared or exclusive) and
//     whether this process is in the host's network namespace.
//   - copy-on-fork: the kernel keeps registered memory intact in a forked
//     child (Linux 5.13 and later).
//   - bpf: the privileges listener steering needs (CAP_BPF or
//     CAP_SYS_ADMIN, and CAP_NET_ADMIN); without them rdmabind listens in
//     the degraded mode of docs/listen.md.
//   - registry: the registry directory is writable, and the registry file
//     of this namespace and user.
//
// The package reads and reports; it changes nothing on the host but the
// user's registry directory, which it makes where the first Bind would.
// It does not log; a fact that cannot be gathered is a finding of its
// check.
package doctor
