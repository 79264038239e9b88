//go:build !linux

package rdmacm

// Off Linux there is no RDMA device to watch (NewEventChannel fails first).

func watchNodes(lost func(dev string), created func(), added func(dev string)) {}

func releaseDeletedNodes([]ctxFDs) int { return 0 }
