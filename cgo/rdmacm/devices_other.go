//go:build !linux

package rdmacm

// Off Linux there is no RDMA device to watch (NewEventChannel fails first).

func watchNodes(lost, added func(dev string)) {}

func releaseDeletedNodes([]ctxFDs) {}
