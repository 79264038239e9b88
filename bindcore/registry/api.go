package registry

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
)

// Options configure Open. The zero value opens the registry of the calling
// thread's network namespace in DefaultDir().
type Options struct {
	// Dir holds the registry file; "" means DefaultDir(), a directory no
	// other user can create, replace or read. A Dir others can write (such
	// as /dev/shm) lets them plant a file or link under the registry's name
	// first: Open refuses it (ErrPermission), which denies the registry to
	// its user.
	Dir string
	// Path is the file itself, overriding Dir and the name derived from
	// Netns.
	Path string
	// Netns is the inode of the network namespace the registry is for; 0
	// means CurrentNetns(). It names the file and is checked against the
	// file's header.
	Netns uint64
	// Records is the record count of a file Open creates (0 means
	// DefaultRecords). An existing file keeps its own count.
	Records int
}

// ClaimRequest is what a claim is for.
type ClaimRequest struct {
	// Addr is the local address, IPv4 or IPv6; the unspecified address is
	// the wildcard. An IPv4-mapped IPv6 address is stored as IPv4 and a zone
	// is dropped.
	Addr netip.Addr
	// Port is the local port; 0 is refused (pick one with FindFreePort).
	Port uint16
	// Role is what the socket does; 0 means RoleBound.
	Role Role
	// SocketID names the socket (a shadow socket's SO_COOKIE, say); 0 means
	// NewSocketID().
	SocketID uint64
	// Share is the sharing policy; the zero value is ShareSameUser.
	Share Share
	// DualStack says an IPv6 wildcard also covers IPv4 (IPV6_V6ONLY off).
	// The zero value is V6ONLY, as rdmabind's shadow sockets are. It is
	// ignored for IPv4 addresses.
	DualStack bool
	// Fresh asks for a port no live claim holds on an overlapping address,
	// whoever its owner: the claim of a port 0 bind, which must get a port
	// of its own. It is a check at claim time only; the record is stored
	// with Share as usual, so later binds of the port may share it.
	Fresh bool
}

// FileName returns the registry file name of user uid in the network
// namespace with inode netns: "rdmabind-netns-<inode>-uid-<uid>.reg".
//
// A registry is one user's: its file is 0600 and a file of another owner is
// refused. Sockets of one user share ports through it; between users the
// kernel arbitrates (a shadow TCP socket of another uid cannot join a
// reuseport group, so its bind fails with EADDRINUSE), which no user can
// tamper with by writing a shared file.
func FileName(netns uint64, uid uint32) string {
	return "rdmabind-netns-" + strconv.FormatUint(netns, 10) + "-uid-" + strconv.FormatUint(uint64(uid), 10) + ".reg"
}

// NewSocketID returns a random nonzero 64-bit id for a socket that has no
// better one.
func NewSocketID() uint64 {
	for {
		if v := rand.Uint64(); v != 0 {
			return v
		}
	}
}

// normalize checks a request and fills in its defaults.
func (req ClaimRequest) normalize() (ClaimRequest, error) {
	a := req.Addr.Unmap().WithZone("")
	if !a.IsValid() {
		return req, fmt.Errorf("%w: no address", ErrInvalid)
	}
	req.Addr = a
	if req.Port == 0 {
		return req, fmt.Errorf("%w: port 0 (choose one with FindFreePort)", ErrInvalid)
	}
	if req.Role == 0 {
		req.Role = RoleBound
	}
	if req.Share != ShareSameUser && req.Share != Exclusive {
		return req, fmt.Errorf("%w: share policy %d", ErrInvalid, req.Share)
	}
	if a.Is4() {
		req.DualStack = false
	}
	if req.SocketID == 0 {
		req.SocketID = NewSocketID()
	}
	return req, nil
}
