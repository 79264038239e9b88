// Package rdmacm is rdmabind's binding of librdmacm, the RDMA connection
// manager: event channels, communication identifiers (cm_ids) and their
// events. It is one of the two packages of the module that use cgo (with
// cgo/verbs); no C type appears in its API. Its C is in rbcm.c and rbcm.h,
// beside the Go, which cgo compiles with the package; rdmacm_cgo.go calls it.
//
// It gives what binding needs: EventChannel, ID, ID.Bind with the device
// and port the address maps to, ID.LocalAddr for the port the kernel picks,
// ID.Listen and EventChannel.GetEvent; and what connections need:
// ID.ResolveAddr, ResolveRoute, Connect, Accept, Reject, Disconnect,
// PeerAddr, and ID.Migrate (rdma_migrate_id) to move an accepted ID to an
// event channel of its own. bindcore uses it for the rdma_cm half of a
// bind; qp uses the IDs of connections, and cgo/verbs creates their QPs on
// them (the raw cm_id passes through cgo/internal/cmraw, never through
// this package's API).
//
//	ch, err := rdmacm.NewEventChannel()
//	if err != nil { ... }  // errors.Is(err, rdmacm.ErrNotSupported): no RDMA here
//	defer ch.Close()
//	id, err := ch.CreateID(rdmacm.PortSpaceTCP)
//	if err != nil { ... }
//	defer id.Close()
//	err = id.Bind(netip.MustParseAddrPort("10.77.0.1:0"))
//	// errors.Is(err, unix.EADDRNOTAVAIL): not an address of this host
//	fmt.Println(id.LocalAddr(), id.DeviceName(), id.PortNum()) // 10.77.0.1:40123 rxe0 1
//
// # Errors
//
// Every error names the librdmacm call and its input ("rdma_bind_addr
// 10.0.0.9:0: cannot assign requested address") and wraps the errno as a
// unix.Errno, so errors.Is(err, unix.EADDRNOTAVAIL) works. Without RDMA
// (no device, no /dev/infiniband/rdma_cm) NewEventChannel fails with an
// error that matches both unix.ENODEV and ErrNotSupported; built without
// cgo, unix.EOPNOTSUPP and ErrNotSupported. ErrClosed marks use after Close.
//
// # Lifetimes
//
// An ID belongs to the EventChannel it was created on and keeps it alive.
// librdmacm requires every cm_id of a channel to be destroyed, and every
// event acknowledged, before the channel is destroyed, and rdma_destroy_id
// waits until the events of its id are acknowledged. So:
//
//   - GetEvent acknowledges each event before it returns, having copied what
//     Go needs into an Event: nothing of librdmacm's event outlives the call,
//     and ID.Close never waits on a caller.
//   - EventChannel.Close closes the IDs still open on it first, then the
//     channel. Their own Close afterwards is a no-op; other methods fail with
//     ErrClosed.
//   - A connect request's new ID (Event.ID) belongs to the receiver, who must
//     Close it.
//   - Close is safe to call twice. Unreachable handles are closed by the
//     garbage collector only as a safety net: an ID left open holds its port.
//
// # Threads and network namespaces
//
// A cm_id belongs to the network namespace of the thread that creates it,
// and keeps it for its life: the addresses it can bind are that namespace's.
// CreateID runs rdma_create_id on a locked OS thread, in the caller thread's
// namespace; CreateIDInNetns runs it on a fresh locked thread switched into
// the namespace of a netns file descriptor, and switches back (a thread that
// cannot switch back is discarded, never reused). Other calls may run on any
// thread.
//
// Waiting for events never blocks an OS thread in C: the channel's
// descriptor is non-blocking and parked on the Go netpoller, and
// rdma_get_cm_event is called only once it is readable.
//
// # Tests
//
// Tests that need an RDMA device skip, with the reason, where
// /dev/infiniband/rdma_cm is absent, and fail instead when RDMABIND_SOFTROCE=1
// (set inside the SoftRoCE guest that ci/softroce/run boots, where rxe0
// serves 10.77.0.1 and fd77::1, and rxe1 10.78.0.1 with --nics 2):
//
//	go test -exec "$PWD/ci/softroce/run --nics 2 --" ./cgo/rdmacm/
package rdmacm
