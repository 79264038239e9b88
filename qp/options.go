package qp

import (
	"runtime"
	"time"
)

// Mode is how a connection is set up.
type Mode int

const (
	// ModeCM connects through rdma_cm (rdma_resolve_addr, rdma_connect,
	// rdma_accept): the default. The connecting id has an rdma_cm port of
	// its own on the socket's address (see docs/qp.md).
	ModeCM Mode = iota
	// ModeTCP connects through a rendezvous over kernel TCP from the
	// socket's own address and port: QP number, GID and PSN are exchanged
	// on the TCP connection (as perftest does without -R), which stays
	// open as the connection's liveness channel.
	ModeTCP
)

func (m Mode) String() string {
	if m == ModeTCP {
		return "tcp"
	}
	return "cm"
}

// ParseMode parses "cm" or "tcp".
func ParseMode(s string) (Mode, bool) {
	switch s {
	case "cm", "rdma_cm", "":
		return ModeCM, true
	case "tcp", "rendezvous":
		return ModeTCP, true
	}
	return 0, false
}

// Options tune a connection. The zero value (or nil) gives the defaults.
type Options struct {
	// Mode is how Dial connects (a Listener accepts both).
	Mode Mode
	// Chunk is the size of one receive (and send) buffer: the largest
	// single RDMA SEND. Longer messages go as several. Default 8 KiB.
	Chunk int
	// RecvDepth is the most receive buffers, and so the most credit the
	// sender gets: how many chunks may be in flight towards this side.
	// Default 32.
	RecvDepth int
	// RecvStart is how many of them a connection starts with; more are
	// registered, doubling, up to RecvDepth, when messages arrive faster
	// than Recv takes them. Default 4 (at most RecvDepth).
	RecvStart int
	// SendDepth is the most send buffers (chunks posted and not yet
	// completed). Default 16.
	SendDepth int
	// SendStart is how many of them a connection starts with; more are
	// registered, doubling, up to SendDepth, when Send finds none free.
	// Default 2 (at most SendDepth).
	SendStart int
	// Bulk is the size of the area the peer may RDMA WRITE a whole
	// message into (and of our staging area for writing ours): a message
	// longer than Chunk and than 64 KiB (or half of Bulk, when smaller)
	// and no longer than the peer's area goes as one RDMA WRITE with
	// immediate data instead of several SENDs, once the peer offered its
	// area (it registers and offers it when it first receives such a
	// message as SENDs) and when the area is free (else as SENDs).
	// Default 1 MiB (a multiple of 64 KiB, at most 16320 KiB); negative:
	// off.
	Bulk int
	// Spin is how long Recv and Send poll a completion queue before they
	// sleep on its completion channel (the Go netpoller). Default 50 µs;
	// negative: never spin. With GOMAXPROCS 1 there is no spin whatever
	// Spin says: the spin is a call into C, and with a single P the
	// runtime's sysmon takes the P back from it every tick (a hand-off, a
	// thread woken, another on return); measured in the guests it made a
	// busy-polling round trip 4 times slower than none (docs/qp.md).
	Spin time.Duration
	// SetupTimeout bounds connection setup when the context has no
	// deadline. Default 15 s.
	SetupTimeout time.Duration
	// MaxSetups is how many connection setups a Listener runs at once;
	// one more abandons the oldest (reported on SetupErrors), so that
	// peers that connect and never finish cost bounded memory. Default
	// 128.
	MaxSetups int
	// RefusedRetry is how long a Dial over rdma_cm goes on dialling
	// when the peer's connection manager answers that nothing listens on
	// the port (reject reason 8, no private data): the gap of a
	// listener's handover, between the closing listener's id and its
	// successor's rdma_listen (rdma_cm lets one id listen on a port and
	// has no queue to migrate; docs/listen.md, "Handover"). Microseconds
	// on a host with CPUs to spare; about 100 ms was measured in a busy
	// one-CPU SoftRoCE guest. Default DefaultRefusedRetry; negative: no
	// retry (a refusal is returned at once, as TCP's would be). A dial to
	// a port where nothing listens fails after this long, with
	// ECONNREFUSED. InfiniBand and RoCE only: iWARP reports the refusal as
	// an errno, which is returned at once.
	RefusedRetry time.Duration
}

// DefaultRefusedRetry is Options.RefusedRetry's default.
const DefaultRefusedRetry = 500 * time.Millisecond

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Chunk <= 0 {
		r.Chunk = 8 << 10
	}
	r.Chunk = (r.Chunk + 63) &^ 63
	if r.RecvDepth <= 0 {
		r.RecvDepth = 32
	}
	if r.RecvDepth < 4 {
		r.RecvDepth = 4
	}
	if r.SendDepth <= 0 {
		r.SendDepth = 16
	}
	if r.RecvStart <= 0 {
		r.RecvStart = 4
	}
	r.RecvStart = min(r.RecvStart, r.RecvDepth)
	if r.SendStart <= 0 {
		r.SendStart = 2
	}
	r.SendStart = min(r.SendStart, r.SendDepth)
	switch {
	case r.Bulk == 0:
		r.Bulk = 1 << 20
	case r.Bulk < 0:
		r.Bulk = 0
	default:
		r.Bulk = min((r.Bulk+bulkUnit-1)/bulkUnit, 255) * bulkUnit
	}
	if r.Spin == 0 {
		r.Spin = 50 * time.Microsecond
	}
	if r.Spin > 0 && runtime.GOMAXPROCS(0) < 2 {
		r.Spin = -1
	}
	if r.SetupTimeout <= 0 {
		r.SetupTimeout = 15 * time.Second
	}
	if r.MaxSetups <= 0 {
		r.MaxSetups = 128
	}
	if r.RefusedRetry == 0 {
		r.RefusedRetry = DefaultRefusedRetry
	}
	return r
}
