package bindcore

import (
	"net/netip"
	"sync"
	"time"

	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/rdma"
)

// missReload is how old the cached topology must be before an address it
// cannot resolve reloads it even though the host's addresses are the same:
// a new address reloads it at once, a GID the kernel adds a moment after
// its address (or a device's link added) within this time.
const missReload = 250 * time.Millisecond

// resolveCache caches the resolver (devices, GID tables and the host's
// addresses), so that a Bind reads no sysfs file. The cache is refreshed
// when rdma_cm disagrees with it (rdma_bind_addr is the authority, the
// cache only a fast path) and when it cannot resolve an address and may be
// out of date (stale). A reload reads every GID of every port (thousands of
// sysfs files on a large host), so a program binding an address that is not
// served, over and over, must not pay one per Bind.
type resolveCache struct {
	root   string
	mu     sync.Mutex
	res    *rdma.Resolver
	addrs  *rdma.AddrTable // the host's addresses res was built with
	loaded time.Time       // when res was read
	// last is the last address res resolved, and its answer: a program
	// binds the same address over and over, and in the TCG guest even a
	// cached resolution costs ~10 µs (cold code and data after the kernel
	// work of the previous Bind), while this lookup costs little. It is
	// res's answer, so it is exactly as fresh as res; it goes with res. The
	// slice is shared by every binding of the address: read-only.
	last    netip.Addr
	lastEps []rdma.Endpoint
}

// Resolve resolves addr as Bind does, on the live system (the topology and
// the host's addresses read afresh): the RDMA device, port and GID a bind of
// addr uses, one Endpoint per active port for the wildcard.
//
// Errors are Bind's for the address (*wsa.Error, with rdma's error as the
// cause): WSAENETDOWN (no RDMA subsystem, no device or no ACTIVE port, an
// unreadable topology, the host's addresses cannot be listed),
// WSAEADDRNOTAVAIL (not an address of this host, loopback, or not served
// by an RDMA device).
func Resolve(addr netip.Addr) ([]rdma.Endpoint, error) {
	var t resolveCache
	eps, err := t.resolve(addr, true)
	if err != nil {
		return nil, SpecError("resolve", addr.String(), err)
	}
	return eps, nil
}

// load reads the topology and, unless the caller has just listed them
// (addrs non-nil), the host's addresses.
func (t *resolveCache) load(addrs *rdma.AddrTable) (*rdma.Resolver, *rdma.AddrTable, error) {
	root := t.root
	if root == "" {
		root = "/"
	}
	topo, err := rdma.ReadTopology(root)
	if err != nil {
		return nil, nil, err
	}
	if addrs == nil {
		if addrs, err = rdma.LiveAddrs(); err != nil {
			return nil, nil, wsa.Wrap(wsa.WSAENETDOWN, "resolve", "", err, "cannot list the host's addresses")
		}
	}
	return rdma.NewResolver(topo, addrs), addrs, nil
}

// stale reports whether a cached topology that cannot resolve addr is worth
// reloading: never for loopback (no RDMA device serves it); always when it
// is older than missReload or the host's addresses changed since. The
// addresses it listed to tell, if any, go to the reload.
func (t *resolveCache) stale(addr netip.Addr) (bool, *rdma.AddrTable) {
	if addr.Unmap().IsLoopback() {
		return false, nil
	}
	t.mu.Lock()
	loaded, addrs := t.loaded, t.addrs
	t.mu.Unlock()
	if time.Since(loaded) >= missReload {
		return true, nil
	}
	live, err := rdma.LiveAddrs()
	if err != nil {
		return true, nil
	}
	return !live.Equal(addrs), live
}

// resolve resolves addr on the cached topology, reloading it once if
// refresh is set, or if that fails and the cache is stale.
func (t *resolveCache) resolve(addr netip.Addr, refresh bool) ([]rdma.Endpoint, error) {
	t.mu.Lock()
	res := t.res
	if res != nil && !refresh && t.lastEps != nil && addr == t.last {
		eps := t.lastEps
		t.mu.Unlock()
		return eps, nil
	}
	t.mu.Unlock()
	var fresh *rdma.AddrTable // the host's addresses, if stale just listed them
	if res != nil && !refresh {
		eps, err := res.Resolve(addr)
		if err == nil {
			t.remember(res, addr, eps)
			return eps, nil
		}
		stale, live := t.stale(addr)
		if !stale {
			return nil, err
		}
		fresh = live
	}
	res, addrs, err := t.load(fresh)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.res, t.addrs, t.loaded = res, addrs, time.Now()
	t.last, t.lastEps = netip.Addr{}, nil
	t.mu.Unlock()
	eps, err := res.Resolve(addr)
	if err == nil {
		t.remember(res, addr, eps)
	}
	return eps, err
}

// remember caches res's answer for addr, if res is still the cached
// resolver.
func (t *resolveCache) remember(res *rdma.Resolver, addr netip.Addr, eps []rdma.Endpoint) {
	t.mu.Lock()
	if t.res == res {
		t.last, t.lastEps = addr, eps
	}
	t.mu.Unlock()
}
