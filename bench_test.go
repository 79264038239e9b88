package rdmabind

import (
	"fmt"
	"io"
	"net"
	"net/http"
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

	httpOnce          sync.Once
	httpPeer          *testutil.Peer
	httpAddr, tcpAddr string
	httpErr           error
}

// launch starts a helper in guest 2 and waits until it is ready.
func launch(env ...string) (*testutil.Peer, error) {
	ready := filepath.Join(os.Getenv("RDMABIND_SOFTROCE_SHARED"), fmt.Sprintf("net-bench-%d.ready", time.Now().UnixNano()))
	p, err := testutil.LaunchPeer(append(env, "RDMABIND_NET_READY="+ready)...)
	if err != nil {
		return nil, err
	}
	for end := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			return p, nil
		}
		if time.Now().After(end) {
			p.Signal("KILL")
			p.Wait()
			return nil, fmt.Errorf("bench helper not ready")
		}
	}
}

func benchPeer(b *testing.B) string {
	testutil.SkipUnlessRDMA(b)
	testutil.SkipUnlessPeer(b)
	bench.once.Do(func() {
		bench.addr = net.JoinHostPort(testutil.PeerAddr(), "7602")
		bench.peer, bench.err = launch(helperEnv+"=stream", "RDMABIND_NET_ADDR="+bench.addr)
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.addr
}

func stopBenchPeer() {
	for _, p := range []*testutil.Peer{bench.peer, bench.httpPeer} {
		if p != nil {
			p.Signal("KILL")
			p.Wait()
		}
	}
}

// httpPeer starts, once, an HTTP server in guest 2 on rdmabind and on
// kernel TCP over the same link.
func httpPeer(b *testing.B) (rdmaAddr, tcpAddr string) {
	testutil.SkipUnlessRDMA(b)
	testutil.SkipUnlessPeer(b)
	bench.httpOnce.Do(func() {
		bench.httpAddr = net.JoinHostPort(testutil.PeerAddr(), "7610")
		bench.tcpAddr = net.JoinHostPort(testutil.PeerAddr(), "7611")
		bench.httpPeer, bench.httpErr = launch(helperEnv+"=http", "RDMABIND_NET_ADDR="+bench.httpAddr,
			"RDMABIND_NET_TCP_ADDR="+bench.tcpAddr, "RDMABIND_NET_NAME=bench")
	})
	if bench.httpErr != nil {
		b.Fatal(bench.httpErr)
	}
	return bench.httpAddr, bench.tcpAddr
}

// BenchmarkHTTPGet is one GET /who (a 5-byte answer) on a keep-alive
// connection: over rdmabind, and over kernel TCP on the same link, side
// by side. Under TCG rxe is about 20 times slower than kernel TCP: the
// numbers are reported, not a goal.
func BenchmarkHTTPGet(b *testing.B) {
	rdmaAddr, tcpAddr := httpPeer(b)
	for _, via := range []string{"rdma", "tcp"} {
		b.Run(via, func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			addr := tcpAddr
			if via == "rdma" {
				d := &Dialer{Timeout: 15 * time.Second}
				tr.DialContext = d.DialContext
				addr = rdmaAddr
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			url := "http://" + addr + "/who"
			get := func() {
				resp, err := client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			get() // the connection
			rtts := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				get()
				rtts = append(rtts, time.Since(t0))
			}
			b.StopTimer()
			reportRTT(b, rtts)
		})
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
