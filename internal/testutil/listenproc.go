package testutil

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ListenProc is a helper process of the listen tests (the election's
// listener, cmport's parker, bindcore's RDMA listener) seen from the test:
// its reply lines, and what it reports of its accepts, its designation and
// its parked ids, one line each:
//
//	acc <conn id> <mono ns>    a connection accepted (a duplicate is an error)
//	rdma ..., tcp ...          an rdma_cm request, a TCP connection
//	pre ...                    ignored
//	accerr ...                 an accept failed
//	designated <mono ns>
//	parked <addr:port> <mono ns>
//	err ...                    an error (reported when the process is killed)
//
// Every other line is a reply (Dialogue).
type ListenProc struct {
	*Dialogue
	PID int

	Mu         sync.Mutex
	accepts    map[uint64]int64 // connection id -> accept time
	AccErrs    []string
	designated int64  // mono ns, 0 until designated
	DesLine    string // the whole "designated" line
	Parked     map[string]int64
	RDMA, TCP  int // rdma_cm requests and TCP connections an RDMA listener reported
	errs       []string
}

// StartListenProc starts the test binary as a helper process (HelperCommand)
// and reads its lines (StartDialogue); it is killed when the test ends.
func StartListenProc(t testing.TB, name string, uid uint32, env ...string) *ListenProc {
	t.Helper()
	p := &ListenProc{accepts: map[uint64]int64{}, Parked: map[string]int64{}}
	p.Dialogue = StartDialogue(t, name, HelperCommand(t, uid, env...), p.report)
	t.Cleanup(p.Kill)
	return p
}

// report takes the helper's asynchronous lines and notes its errors, which
// are replies too.
func (p *ListenProc) report(line string) bool {
	var id uint64
	var ts int64
	p.Mu.Lock()
	defer p.Mu.Unlock()
	switch {
	case strings.HasPrefix(line, "acc "):
		fmt.Sscanf(line, "acc %d %d", &id, &ts)
		if _, dup := p.accepts[id]; dup {
			p.errs = append(p.errs, fmt.Sprintf("accepted connection %d twice", id))
		}
		p.accepts[id] = ts
	case strings.HasPrefix(line, "rdma "):
		p.RDMA++
	case strings.HasPrefix(line, "tcp "):
		p.TCP++
	case strings.HasPrefix(line, "pre "):
	case strings.HasPrefix(line, "accerr "):
		p.AccErrs = append(p.AccErrs, line)
	case strings.HasPrefix(line, "designated "):
		fmt.Sscanf(line, "designated %d", &ts)
		p.designated, p.DesLine = ts, line
	case strings.HasPrefix(line, "parked "):
		var ap string
		fmt.Sscanf(line, "parked %s %d", &ap, &ts)
		p.Parked[ap] = ts
	case strings.HasPrefix(line, "err "):
		p.errs = append(p.errs, line)
		return false
	default:
		return false
	}
	return true
}

// Role asks a listener its role.
func (p *ListenProc) Role() string {
	p.T.Helper()
	return strings.TrimPrefix(p.Do("role", "role "), "role ")
}

// Count asks a listener how many connections it accepted.
func (p *ListenProc) Count() int {
	p.T.Helper()
	var n int
	fmt.Sscanf(p.Do("count", "count"), "count %d", &n)
	return n
}

// DesignatedAt is when the helper reported it was designated, 0 before.
func (p *ListenProc) DesignatedAt() int64 {
	p.Mu.Lock()
	defer p.Mu.Unlock()
	return p.designated
}

// WaitDesignated waits until the helper reported it was designated.
func (p *ListenProc) WaitDesignated(d time.Duration) int64 {
	p.T.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(200 * time.Microsecond) {
		if ts := p.DesignatedAt(); ts != 0 {
			return ts
		}
	}
	p.T.Fatalf("%s not designated after %v", p.Name, d)
	return 0
}

// Accepted returns the connections accepted, by id, with their times.
func (p *ListenProc) Accepted() map[uint64]int64 {
	p.Mu.Lock()
	defer p.Mu.Unlock()
	m := make(map[uint64]int64, len(p.accepts))
	for k, v := range p.accepts {
		m[k] = v
	}
	return m
}

// StopAndKill stops the process, notes the client ports of the
// connections it holds accepted (its socket fds, in /proc/net/tcp{,6}),
// and kills it: a process killed inside accept4(2) dies holding a
// connection it never reported, which the clients alone cannot tell from
// one reset in its queue. It returns the time just before the kill.
func (p *ListenProc) StopAndKill() (held map[int]bool, tKill int64) {
	p.T.Helper()
	held = StopAndHeldPorts(p.T, p.PID)
	t := Mono()
	unix.Kill(p.PID, unix.SIGKILL)
	return held, t
}

// Kill ends the process (closing its stdin first, SIGKILL after 3 s) and
// fails the test with the errors it reported. Safe twice.
func (p *ListenProc) Kill() {
	p.Stop(3 * time.Second)
	p.Mu.Lock()
	defer p.Mu.Unlock()
	for _, e := range p.errs {
		p.T.Errorf("%s: %s", p.Name, e)
	}
	p.errs = nil
}

// FreeLoopPort returns a port of 127.0.0.1 no one holds now.
func FreeLoopPort(t testing.TB) netip.AddrPort {
	t.Helper()
	return FreePortOn(t, "127.0.0.1:0")
}

// FreePortOn returns a port of the address of ap (port 0) no one holds now.
func FreePortOn(t testing.TB, ap string) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", ap)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return netip.MustParseAddrPort(l.Addr().String())
}

// Label names p in failures (Receiver).
func (p *ListenProc) Label() string { return p.Name }
