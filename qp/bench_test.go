package qp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/internal/testutil"
	"github.com/rdmabind/rdmabind/rdma"
)

// The benchmarks run in guest 1 of a two-guest SoftRoCE run against an echo
// helper in guest 2, beside perftest on the same devices (ci/qp-perf runs
// both and prints the ratios). RDMABIND_QP_SPIN sets how long both sides
// busy-poll before they sleep on the completion channel: default here -1ns,
// never (event mode, as ib_send_lat -e); 20ms is busy polling as perftest
// does by default; the library's default is 50us.

var bench struct {
	once sync.Once
	err  error
	peer *testutil.Peer
	srv  netip.AddrPort
	b    *bindcore.Binder
	n    int
}

func benchSpin() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("RDMABIND_QP_SPIN")); err == nil {
		return d
	}
	return -1
}

// peerSpin is the helper's Spin: RDMABIND_QP_PEER_SPIN, else benchSpin.
func peerSpin() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("RDMABIND_QP_PEER_SPIN")); err == nil {
		return d
	}
	return benchSpin()
}

// benchPeer starts the echo helper in guest 2 once for all benchmarks.
func benchPeer(b *testing.B) (netip.AddrPort, *bindcore.Binder) {
	testutil.SkipUnlessRDMA(b)
	testutil.SkipUnlessPeer(b)
	bench.once.Do(func() {
		bench.srv = netip.MustParseAddrPort(testutil.PeerAddr() + ":7476")
		ready := filepath.Join(os.Getenv("RDMABIND_SOFTROCE_SHARED"), fmt.Sprintf("qp-bench-%d.ready", time.Now().UnixNano()))
		bench.peer, bench.err = testutil.LaunchPeer(helperEnv+"=echo", "RDMABIND_QP_ADDR="+bench.srv.String(),
			"RDMABIND_QP_NAME=bench", "RDMABIND_QP_READY="+ready, "RDMABIND_QP_SPIN="+peerSpin().String())
		if bench.err != nil {
			return
		}
		for end := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(ready); err == nil {
				break
			}
			if time.Now().After(end) {
				bench.err = fmt.Errorf("bench helper not ready")
				return
			}
		}
		bench.b, bench.err = bindcore.Open(bindcore.Options{})
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.srv, bench.b
}

func stopBenchPeer() {
	if bench.peer != nil {
		bench.peer.Signal("KILL")
		bench.peer.Wait()
	}
	if bench.b != nil {
		bench.b.Close()
	}
}

// benchSocket starts the echo helper (once) and binds a socket of its
// own port to dial it from; the socket closes with b.
func benchSocket(b *testing.B) (*bindcore.Socket, netip.AddrPort) {
	srv, bd := benchPeer(b)
	bench.n++
	s, err := bd.Socket(bindcore.AFInet)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.BindAddrPort(netip.MustParseAddrPort(fmt.Sprintf("10.77.0.1:%d", 7500+bench.n))); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, srv
}

func benchConn(b *testing.B, mode Mode) *Conn {
	s, srv := benchSocket(b)
	c, err := Dial(context.Background(), s, srv, &Options{Mode: mode, Spin: benchSpin()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkSendLatency is 64-byte ping-pong: the metric "p50-us" is half the
// median round trip, as ib_send_lat's t_typical is.
func BenchmarkSendLatency(b *testing.B) {
	for _, mode := range []Mode{ModeCM, ModeTCP} {
		b.Run(mode.String(), func(b *testing.B) {
			c := benchConn(b, mode)
			msg := make([]byte, 64)
			in := make([]byte, 64)
			for range 20 { // warm up
				c.Send(msg)
				c.Recv(in)
			}
			rtt := make([]time.Duration, 0, b.N)
			var sendT time.Duration
			counters := watchCounters(b)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if err := c.Send(msg); err != nil {
					b.Fatal(err)
				}
				sendT += time.Since(t0)
				if _, err := c.Recv(in); err != nil {
					b.Fatal(err)
				}
				rtt = append(rtt, time.Since(t0))
			}
			b.StopTimer()
			counters()
			slices.Sort(rtt)
			b.ReportMetric(float64(rtt[len(rtt)/2].Nanoseconds())/2000, "p50-us")
			b.ReportMetric(float64(rtt[len(rtt)*99/100].Nanoseconds())/2000, "p99-us")
			b.ReportMetric(float64(sendT.Nanoseconds())/float64(b.N)/1000, "send-us")
		})
	}
}

// BenchmarkSendBandwidth streams 64 KiB messages one way (b.N of them)
// and waits for the receiver's count: "MB/s" as ib_send_bw's BW average.
func BenchmarkSendBandwidth(b *testing.B) {
	for _, mode := range []Mode{ModeCM, ModeTCP} {
		b.Run(mode.String(), func(b *testing.B) {
			c := benchConn(b, mode)
			msg := make([]byte, 64<<10)
			in := make([]byte, 64)
			b.SetBytes(int64(len(msg)))
			counters := watchCounters(b)
			b.ResetTimer()
			if err := c.Send(msgSink); err != nil {
				b.Fatal(err)
			}
			for range b.N {
				if err := c.Send(msg); err != nil {
					b.Fatal(err)
				}
			}
			if err := c.Send(msgEnd); err != nil {
				b.Fatal(err)
			}
			n, err := c.Recv(in)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			counters()
			var msgs, total int
			fmt.Sscanf(string(in[:n]), "%d %d", &msgs, &total)
			if msgs != b.N || total != b.N*len(msg) {
				b.Fatalf("receiver got %d messages, %d bytes; sent %d", msgs, total, b.N)
			}
		})
	}
}

// BenchmarkSetup is Dial (to an established connection) plus Close.
func BenchmarkSetup(b *testing.B) {
	for _, mode := range []Mode{ModeCM, ModeTCP} {
		b.Run(mode.String(), func(b *testing.B) {
			s, srv := benchSocket(b)
			var setup []time.Duration
			counters := watchCounters(b)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				c, err := Dial(context.Background(), s, srv, &Options{Mode: mode})
				if err != nil {
					b.Fatal(err)
				}
				setup = append(setup, time.Since(t0))
				c.Close()
			}
			b.StopTimer()
			counters()
			slices.Sort(setup)
			b.ReportMetric(float64(setup[len(setup)/2].Microseconds())/1000, "p50-setup-ms")
		})
	}
}

// BenchmarkConnMemory holds 10, 100 and 1,000 connections (rdma_cm, to the
// echo helper in guest 2, one 64-byte echo on each) and reports the
// process's memory divided by the connections: mem-per-conn-bytes is
// (VmRSS + VmPin) / conns, as docs/qp.md defines it (the pinned pages are
// in VmRSS too: the sum counts them twice), and rss-delta-per-conn-bytes
// what the connections added to VmRSS. Run it with -test.benchtime 1x, in
// guests of 3 GiB (ci/qp-perf): rxe's kernel side of 1,000 queue pairs
// does not fit beside the peer's in 1 GiB (guest 2 stalls near 400).
func BenchmarkConnMemory(b *testing.B) {
	for _, conns := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			raiseFileLimit(b, uint64(8*conns+1024))
			s, srv := benchSocket(b)
			for range b.N {
				runtime.GC()
				rss0, _ := procMemory(b)
				cs := make([]*Conn, 0, conns)
				msg, in := make([]byte, 64), make([]byte, 64)
				for range conns {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					c, err := Dial(ctx, s, srv, &Options{Spin: benchSpin()})
					cancel()
					if err != nil {
						b.Fatalf("connection %d: %v", len(cs)+1, err)
					}
					cs = append(cs, c)
					if err := c.Send(msg); err != nil {
						b.Fatal(err)
					}
					if _, err := c.Recv(in); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				rss, pin := procMemory(b)
				b.ReportMetric(float64(rss+pin)/float64(conns), "mem-per-conn-bytes")
				b.ReportMetric(float64(rss-rss0)/float64(conns), "rss-delta-per-conn-bytes")
				b.ReportMetric(float64(pin)/float64(conns), "pin-per-conn-bytes")
				for _, c := range cs {
					c.Close()
				}
			}
		})
	}
}

// watchCounters reads the counters of the RDMA port that serves the
// benchmarks' address (rxe0 port 1 in the guest) and returns a function that
// reads them again and reports what moved: the packets per operation
// ("pkts/op", sent and received), the counters that say something went
// wrong ("trouble", their sum: retransmits, out-of-sequence packets, CNPs,
// errors) and, in the log, every counter that moved. A port whose counters
// cannot be read reports nothing (a log line says why).
func watchCounters(b *testing.B) func() {
	eps, err := rdma.Resolve(netip.MustParseAddr("10.77.0.1"))
	if err != nil {
		b.Logf("counters: %v", err)
		return func() {}
	}
	sys := rdma.Sysfs{}
	before, err := sys.ReadPortCounters(eps[0].Device, eps[0].Port)
	if err != nil {
		b.Logf("counters: %v", err)
		return func() {}
	}
	return func() {
		after, err := sys.ReadPortCounters(eps[0].Device, eps[0].Port)
		if err != nil {
			b.Logf("counters: %v", err)
			return
		}
		d := after.Sub(before).NonZero()
		b.ReportMetric(float64(d.Packets())/float64(b.N), "pkts/op")
		b.ReportMetric(float64(d.TroubleSum()), "trouble")
		b.Logf("%s port %d counters over %d ops: %v %v; trouble: %q", eps[0].Device, eps[0].Port, b.N, d.PMA, d.HW, d.Trouble())
	}
}

// procMemory is this process's VmRSS and VmPin (/proc/self/status), in
// bytes.
func procMemory(b *testing.B) (rss, pin int64) {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(st), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(l, "VmRSS: %d kB", &kb); err == nil {
			rss = kb << 10
		}
		if _, err := fmt.Sscanf(l, "VmPin: %d kB", &kb); err == nil {
			pin = kb << 10
		}
	}
	return rss, pin
}

// raiseFileLimit raises RLIMIT_NOFILE to at least n (each connection
// holds a few descriptors: its event channel, its completion channels).
func raiseFileLimit(b *testing.B, n uint64) {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		b.Fatal(err)
	}
	if l.Cur >= n {
		return
	}
	l.Cur, l.Max = max(l.Cur, n), max(l.Max, n)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		b.Fatalf("RLIMIT_NOFILE to %d: %v", n, err)
	}
}
