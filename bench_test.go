package rdmabind

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/internal/testutil"
)

// The benchmarks compare the stream with the qp connection under it, side
// by side in one run, against one echo server in guest 2 (the "stream"
// helper: io.Copy on each connection). A 64-byte message is one qp message
// whether the stream or qp sends it, and the echo answers it with one.
//
//	go test -run '^$' -bench . -exec 'ci/softroce/run --hosts 2 --' .

var bench struct {
	once sync.Once
	peer *testutil.Peer
	addr string
	err  error
}

func benchPeer(b *testing.B) string {
	testutil.SkipUnlessRDMA(b)
	testutil.SkipUnlessPeer(b)
	bench.once.Do(func() {
		bench.addr = net.JoinHostPort(testutil.PeerAddr(), "7602")
		ready := filepath.Join(os.Getenv("RDMABIND_SOFTROCE_SHARED"), fmt.Sprintf("net-bench-%d.ready", time.Now().UnixNano()))
		bench.peer, bench.err = testutil.LaunchPeer(helperEnv+"=stream", "RDMABIND_NET_ADDR="+bench.addr, "RDMABIND_NET_READY="+ready)
		if bench.err != nil {
			return
		}
		for end := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(ready); err == nil {
				return
			}
			if time.Now().After(end) {
				bench.err = fmt.Errorf("bench helper not ready")
				return
			}
		}
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.addr
}

func stopBenchPeer() {
	if bench.peer != nil {
		bench.peer.Signal("KILL")
		bench.peer.Wait()
	}
}

func benchDial(b *testing.B) *Conn {
	c, err := Dial("rdma", benchPeer(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c.(*Conn)
}

// reportRTT reports the median round trip ("p50-us") besides ns/op.
func reportRTT(b *testing.B, rtts []time.Duration) {
	slices.Sort(rtts)
	if len(rtts) > 0 {
		b.ReportMetric(float64(rtts[len(rtts)/2].Nanoseconds())/1e3, "p50-us")
	}
}

// BenchmarkRoundTrip64 is a 64-byte round trip: "stream" writes and reads
// it through the Conn, "qp" sends and receives it as a message on the same
// kind of connection (Conn.QP).
func BenchmarkRoundTrip64(b *testing.B) {
	msg := make([]byte, 64)
	for _, via := range []string{"qp", "stream"} {
		b.Run(via, func(b *testing.B) {
			c := benchDial(b)
			buf := make([]byte, 64)
			rtts := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				var err error
				if via == "qp" {
					if err = c.QP().Send(msg); err == nil {
						_, err = c.QP().Recv(buf)
					}
				} else {
					if _, err = c.Write(msg); err == nil {
						_, err = io.ReadFull(c, buf)
					}
				}
				if err != nil {
					b.Fatal(err)
				}
				rtts = append(rtts, time.Since(t0))
			}
			b.StopTimer()
			reportRTT(b, rtts)
		})
	}
}

// BenchmarkEchoBandwidth moves 1 MiB per op each way through the echo:
// "stream" with Write and Read of the Conn, "qp" with Send and Recv of 1 MiB
// messages; a goroutine reads while the benchmark writes.
func BenchmarkEchoBandwidth(b *testing.B) {
	const size = 1 << 20
	msg := make([]byte, size)
	for _, via := range []string{"qp", "stream"} {
		b.Run(via, func(b *testing.B) {
			c := benchDial(b)
			b.SetBytes(size)
			done := make(chan error, 1)
			b.ResetTimer()
			go func() {
				buf := make([]byte, size)
				want := b.N * size
				for got := 0; got < want; {
					var n int
					var err error
					if via == "qp" {
						n, err = c.QP().Recv(buf)
					} else {
						n, err = c.Read(buf)
					}
					if err != nil {
						done <- err
						return
					}
					got += n
				}
				done <- nil
			}()
			for range b.N {
				var err error
				if via == "qp" {
					err = c.QP().Send(msg)
				} else {
					_, err = c.Write(msg)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
