// Package cmport owns the rdma_cm side of rdmabind's ports: which rdma_cm
// id holds an address and port, and where its connection requests go.
//
// rdma_cm lets several ids bind one address and port (REUSEADDR) only while
// none of them listens, and hands a connect request to the first id on the
// port that matches it. So:
//
//   - Anchor creates a Binder's ids on its event channel (Bind,
//     BindEphemeral for port 0, NewID) and parks a bound id (closes it,
//     the socket keeps its registry claim and kernel TCP reservation) when
//     a listener of the port is designated, in this process (ParkLocal) or
//     another (the registry's doorbell, watched with inotify, or polling);
//   - Bound is one socket's parkable id;
//   - Listener is the rdma_cm half of a listening socket, driven by package
//     election (election.RDMAPort): it listens once the port is its alone;
//   - Dispatcher routes the connect requests of the Binder's event channel
//     to the queue of the listening id they name.
//
// The errors are rdma_cm's errnos, and HeldError (matching
// unix.EADDRINUSE) naming who holds a port; package bindcore turns them
// into the spec's codes. Reach for package bindcore rather than this one.
package cmport
