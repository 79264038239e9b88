package bindcore

import (
	"net/netip"
	"sync"

	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/rdma"
)

// topology caches the resolver (devices, GID tables and the host's
// addresses), so that a Bind reads no sysfs file. The cache is refreshed
// when it cannot resolve an address and when rdma_cm disagrees with it:
// rdma_bind_addr is the authority, the cache only a fast path.
type topology struct {
	root string
	mu   sync.Mutex
	res  *rdma.Resolver
}

func (t *topology) load() (*rdma.Resolver, error) {
	root := t.root
	if root == "" {
		root = "/"
	}
	topo, err := rdma.ReadTopology(root)
	if err != nil {
		return nil, err
	}
	addrs, err := rdma.LiveAddrs()
	if err != nil {
		return nil, wsa.Wrap(wsa.WSAENETDOWN, "resolve", "", err, "cannot list the host's addresses")
	}
	return rdma.NewResolver(topo, addrs), nil
}

// resolve resolves addr on the cached topology, reloading it once if that
// fails or if refresh is set.
func (t *topology) resolve(addr netip.Addr, refresh bool) ([]rdma.Endpoint, error) {
	t.mu.Lock()
	res := t.res
	t.mu.Unlock()
	if res != nil && !refresh {
		if eps, err := res.Resolve(addr); err == nil {
			return eps, nil
		}
	}
	res, err := t.load()
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.res = res
	t.mu.Unlock()
	return res.Resolve(addr)
}
