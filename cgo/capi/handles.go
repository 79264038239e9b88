//go:build linux && cgo

package main

import (
	"sync"

	"github.com/rdmabind/rdmabind"
	"github.com/rdmabind/rdmabind/bindcore"
)

// sock is what a SOCKET stands for: a bound (and maybe listening) socket,
// or a connection (dialled from a socket, or accepted).
type sock struct {
	fam bindcore.Family

	mu   sync.Mutex // guards the fields below and serialises state changes
	s    *bindcore.Socket
	ln   *rdmabind.Listener
	conn *rdmabind.Conn
	dead bool // closed: the handle is gone from the table
	// cancel ends a WSPConnect under way (which does not hold mu while it
	// waits); nil when none is.
	cancel func()
}

// table maps SOCKETs to socks. Handles are never reused: a stale SOCKET is
// WSAENOTSOCK, not someone else's socket.
var table struct {
	sync.Mutex
	m    map[uintptr]*sock
	next uintptr
}

// handleBase keeps handles away from small integers a caller might pass
// by mistake (0, fds).
const handleBase = 0x5d000000

func add(s *sock) uintptr {
	table.Lock()
	defer table.Unlock()
	if table.m == nil {
		table.m = map[uintptr]*sock{}
	}
	table.next++
	h := handleBase + table.next
	table.m[h] = s
	return h
}

func lookup(h uintptr) *sock {
	table.Lock()
	defer table.Unlock()
	return table.m[h]
}

// remove takes h out of the table and returns what it was.
func remove(h uintptr) *sock {
	table.Lock()
	defer table.Unlock()
	s := table.m[h]
	delete(table.m, h)
	return s
}

func openSockets() int {
	table.Lock()
	defer table.Unlock()
	return len(table.m)
}

// binder is the process's Binder, opened at the first WSPSocket.
var binder struct {
	sync.Mutex
	b *bindcore.Binder
}

func theBinder() (*bindcore.Binder, error) {
	binder.Lock()
	defer binder.Unlock()
	if binder.b == nil {
		b, err := bindcore.Open(bindcore.Options{})
		if err != nil {
			return nil, err
		}
		binder.b = b
	}
	return binder.b, nil
}
