// Package sentinel makes the sentinel errors of rdmabind's packages below
// bindcore (rdma, bindcore/registry, ...): an error value that errors.Is
// matches by identity and that also matches one errno, so that an error
// wrapping it matches both the package's sentinel and the errno a Go caller
// expects:
//
//	var ErrNoRDMA = sentinel.New("no RDMA subsystem", unix.ENETDOWN)
//
//	err := fmt.Errorf("rdma: resolve %s: %w: ...", addr, ErrNoRDMA)
//	errors.Is(err, ErrNoRDMA)      // true
//	errors.Is(err, unix.ENETDOWN)  // true
//
// This is cilium/ebpf's model (internal/sys wraps a sentinel with its
// errno). Which spec (WSA) code a sentinel stands for is decided in one
// place only, bindcore's errmap.go; this package knows nothing of it.
package sentinel
