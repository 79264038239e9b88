// Package steer makes exactly one listener of a shared port receive its
// connection requests, in the kernel, with an SK_REUSEPORT eBPF program.
//
// WSPBind lets several sockets share a port, but "if more than one socket is
// listening on the same port, only one should receive connection requests".
// The kernel's SO_REUSEPORT spreads connections over every listener of a
// reuseport group by hash; a steering Group replaces that choice with a
// lookup: the program selects the socket in the designated slot of a
// two-slot REUSEPORT_SOCKARRAY, falls back to the standby slot when the
// designated one is empty (its socket closed or its process died), and
// drops the connection request (the client sees a reset) when both are
// empty. It never lets the kernel fall back to hashing.
//
// The program is loaded with the select-or-migrate attach type, so when a
// listener closes, the connections queued on it (its accept queue, and
// handshakes in progress) move to the socket the program selects instead of
// being reset; net.ipv4.tcp_migrate_req need not be set.
//
// One program and three maps serve every group of a network namespace:
// the first Open in the namespace creates them, loading the program
// through the verifier, and pins them at
//
//	/sys/fs/bpf/rdmabind/<netns inode>/steer2/{prog,socks,groups,state}
//
// (directories mode 0700; bpffs is mounted at /sys/fs/bpf when it is not);
// they stay pinned when every group is gone. A group is an entry in those
// maps: its key (the listeners' bound address and port, as the program reads
// them from the listener a connection request is for) maps to an index,
// which has two slots of the REUSEPORT_SOCKARRAY and a state word, in an
// array every process memory-maps, saying which slot is designated. Open
// loads the netns's objects once per process (and keeps them after the last
// Group of the namespace closes; CloseIdle closes them), creates the
// group's entries when no process has, and holds a shared flock on the
// group's directory, steer2/<inet|inet6>-<addr>-<port>, for as long as the
// Group is open. Release removes the group's directory and entries when no
// other process holds the group open; Close never does. Slot changes of all
// processes are serialized by a flock on steer2/; a switch to the socket in
// the standby slot is a compare-and-swap of the state word, without it.
//
// Typical use, in every process of the group (all of one uid, one netns):
//
//	sock, _ := shadow.Bind(ap)
//	key, _ := steer.KeyOf(sock)
//	g, err := steer.Open(key, nil)
//	if steer.Degraded(err) {
//		// no BPF privilege or support: run without steering (see below)
//	}
//	_ = g.Listen(sock, backlog) // listen, attach the netns's program
//	_ = g.Standby(sock)         // or g.Designate(sock) in the designated process
//
// A graceful handover designates the successor first (Designate), then
// closes the old listener: requests queued on the old one migrate to the
// successor. A standby that learns the designated process died (WatchProcess
// or any Watch, such as the registry's lock wait) calls TakeOver.
//
// Without access to the pin directory, or, where the netns's program and
// maps are not made yet, without the privilege to make them (CAP_BPF and
// CAP_NET_ADMIN), Open returns an error matching ErrNotPermitted; on a kernel
// without the needed features (5.14+ for select-or-migrate) one matching
// ErrNotSupported. Degraded tells both apart from real failures: callers
// then keep exclusivity by listening on the designated socket only, and lose
// the zero-loss handover. MPTCP sockets cannot be steered (ErrMPTCP).
//
// See docs/steering.md for the program instruction by instruction, the pin
// layout and removal protocol, and measurements.
package steer
