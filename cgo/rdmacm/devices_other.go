//go:build !linux

package rdmacm

// Off Linux there is no RDMA device to watch (NewEventChannel fails first).

func watchNodes(ready chan<- struct{}, lost func(dev string), created func(), added func(dev string)) {
	close(ready)
}

func releaseDeletedNodes([]ctxFDs, map[uint64]bool) int { return 0 }
