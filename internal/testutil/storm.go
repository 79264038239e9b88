package testutil

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Mono returns CLOCK_MONOTONIC in nanoseconds: one clock for a test and its
// helper processes.
func Mono() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// StormConn is one client connection of a connection storm.
type StormConn struct {
	ID      uint64 // sent to the listener first; unique in the test process
	Start   int64  // Mono ns before connect
	Port    int    // client port, 0 when connect failed
	Server  byte   // the greeting: which listener accepted, 0 if none
	Err     error  // connect or read error
	Dial    bool   // Err is from connect
	Skipped bool   // never started: the storm was stopped
}

// stormIDs hands out connection ids to storms.
var stormIDs atomic.Uint64

// Storm makes n TCP connections to addr, conc at a time. Each sends its id
// (8 bytes, little-endian), then reads the listener's one-byte greeting
// and EOF: the protocol of the test listeners of bindcore and its steer
// package. at(i) is called (from the worker that starts it) before
// connection i, so a test can act mid-storm; once at returns false (it must
// keep doing so) no connection starts any more. Storm returns the
// connections made, in order.
func Storm(addr netip.AddrPort, n, conc int, at func(i int) bool) []StormConn {
	base := stormIDs.Add(uint64(n)) - uint64(n)
	res := make([]StormConn, n)
	var next atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if at != nil && !at(i) {
					stop.Store(true)
					res[i].Skipped = true
					continue
				}
				res[i] = dialOne(addr, base+uint64(i))
			}
		}()
	}
	wg.Wait()
	made := res[:0]
	for _, c := range res[:min(n, int(next.Load()))] {
		if !c.Skipped {
			made = append(made, c)
		}
	}
	return made
}

// StormAsync runs Storm in the background; reached is closed when
// connection at is about to start; stop ends the storm early.
func StormAsync(addr netip.AddrPort, n, conc, at int) (reached <-chan struct{}, stop func(), done <-chan []StormConn) {
	r := make(chan struct{})
	d := make(chan []StormConn, 1)
	var stopped atomic.Bool
	go func() {
		d <- Storm(addr, n, conc, func(i int) bool {
			if i == at {
				close(r)
			}
			return !stopped.Load()
		})
	}()
	return r, func() { stopped.Store(true) }, d
}

func dialOne(addr netip.AddrPort, id uint64) StormConn {
	c := StormConn{ID: id, Start: Mono()}
	d := net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", addr.String())
	if err != nil {
		c.Err, c.Dial = err, true
		return c
	}
	defer nc.Close()
	c.Port = nc.LocalAddr().(*net.TCPAddr).Port
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	var idb [8]byte
	binary.LittleEndian.PutUint64(idb[:], id)
	if _, err := nc.Write(idb[:]); err != nil {
		c.Err = err
		return c
	}
	var b [2]byte
	if _, err := io.ReadFull(nc, b[:1]); err != nil {
		c.Err = err
		return c
	}
	c.Server = b[0]
	if m, err := nc.Read(b[1:]); m != 0 || err != io.EOF {
		c.Err = fmt.Errorf("after the greeting: %d bytes, %v", m, err)
	}
	return c
}

// Tally counts a storm's results by listener and error.
type Tally struct {
	By                    map[byte]int
	Refused, Reset, Other int
	Errs                  []error // the first few resets and other errors
}

// CountConns tallies res.
func CountConns(res []StormConn) Tally {
	t := Tally{By: map[byte]int{}}
	for _, c := range res {
		switch {
		case c.Err == nil:
			t.By[c.Server]++
		case errors.Is(c.Err, unix.ECONNREFUSED):
			t.Refused++
		case errors.Is(c.Err, unix.ECONNRESET) || errors.Is(c.Err, io.EOF) || errors.Is(c.Err, io.ErrUnexpectedEOF):
			t.Reset++
			if len(t.Errs) < 5 {
				t.Errs = append(t.Errs, fmt.Errorf("connection %d (port %d): %w", c.ID, c.Port, c.Err))
			}
		default:
			t.Other++
			if len(t.Errs) < 5 {
				t.Errs = append(t.Errs, c.Err)
			}
		}
	}
	return t
}

func (t Tally) String() string {
	by := []string{}
	for k, v := range t.By {
		by = append(by, fmt.Sprintf("%c:%d", k, v))
	}
	sort.Strings(by)
	return fmt.Sprintf("accepted {%s}, refused %d, reset %d, other %d %v", strings.Join(by, " "), t.Refused, t.Reset, t.Other, t.Errs)
}

// Receiver is a listener helper process of a storm test.
type Receiver interface {
	Label() string              // names it in failures
	Count() int                 // the connections it accepted (asks the helper)
	Accepted() map[uint64]int64 // the connection ids it reported, with their accept times
}

// CheckOneReceives checks that all n connections of the storm res were
// greeted by first (the greeting byte of rs[0]), that rs[0] accepted n and
// every other receiver none, and that every connection is among those rs[0]
// reported. It returns the tally.
func CheckOneReceives(t testing.TB, res []StormConn, n int, first byte, rs ...Receiver) Tally {
	t.Helper()
	tl := CountConns(res)
	if tl.By[first] != n || len(tl.By) != 1 {
		t.Fatalf("clients: %v, want all %d by %c", tl, n, first)
	}
	for i, r := range rs {
		want := 0
		if i == 0 {
			want = n
		}
		if got := r.Count(); got != want {
			t.Errorf("%s accepted %d, want %d", r.Label(), got, want)
		}
	}
	acc := rs[0].Accepted()
	for _, c := range res {
		if _, ok := acc[c.ID]; !ok {
			t.Fatalf("connection %d not among %s's accepts", c.ID, rs[0].Label())
		}
	}
	return tl
}
