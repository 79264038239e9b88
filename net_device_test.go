package rdmabind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/internal/testutil"
	"github.com/rdmabind/rdmabind/qp"
)

// peerServer starts a helper of role in guest 2 listening on port and
// waits until it is ready; it returns the helper and its "ip:port".
func peerServer(t *testing.T, role string, port int, env ...string) (*testutil.Peer, string) {
	t.Helper()
	testutil.SkipUnlessPeer(t)
	addr := net.JoinHostPort(testutil.PeerAddr(), fmt.Sprint(port))
	ready := filepath.Join(testutil.PeerShared(t), fmt.Sprintf("net-%s-%d-%d.ready", role, port, time.Now().UnixNano()))
	env = append([]string{helperEnv + "=" + role, "RDMABIND_NET_ADDR=" + addr, "RDMABIND_NET_READY=" + ready}, env...)
	p := testutil.StartPeer(t, env...)
	testutil.WaitFile(t, ready, 60*time.Second)
	return p, addr
}

// httpClient dials with an rdmabind Dialer: "tcp" in the Transport's
// DialContext means the same address over RDMA.
func httpClient(maxConns int) (*http.Client, *http.Transport) {
	d := &Dialer{Timeout: 15 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: maxConns, MaxConnsPerHost: maxConns, DisableCompression: true}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}, tr
}

// logUniform is a size from 1 to max, log-uniform.
func logUniform(r *rand.Rand, max int) int {
	return int(math.Exp(r.Float64() * math.Log(float64(max))))
}

// net/http over rdmabind: an http.Server on rdmabind.Listen in guest 2, an
// http.Client dialling with rdmabind.Dialer: 1,000 POSTs echoed, bodies 1 B
// to 1 MiB log-uniform, 8 at once, every byte checked; then an 8 MiB
// response checked.
func TestDeviceHTTP(t *testing.T) {
	_, addr := peerServer(t, "http", 7600)
	client, tr := httpClient(8)
	defer tr.CloseIdleConnections()
	const requests, workers = 1000, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	var moved [workers]int64
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := w; i < requests; i += workers {
				n := logUniform(r, 1<<20)
				body := make([]byte, n)
				pattern(body, uint64(i), 0)
				resp, err := client.Post("http://"+addr+"/echo", "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					errs <- fmt.Errorf("request %d (%d B): %w", i, n, err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, body) {
					msg := ""
					if resp.StatusCode != 200 {
						msg = string(got[:min(len(got), 300)])
					}
					errs <- fmt.Errorf("request %d (%d B): status %d %s, %d B back, equal %v, %v", i, n, resp.StatusCode, msg, len(got), bytes.Equal(got, body), err)
					return
				}
				moved[w] += int64(2 * n)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var total int64
	for _, m := range moved {
		total += m
	}
	el := time.Since(start)
	t.Logf("%d requests, 8 at once, %d MB moved in %v (%.1f MB/s, guest time under TCG)", requests, total>>20, el.Round(time.Millisecond), float64(total)/1e6/el.Seconds())

	const big = 8 << 20
	resp, err := client.Get(fmt.Sprintf("http://%s/bytes?n=%d&seed=42", addr, big))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := make([]byte, big)
	pattern(want, 42, 0)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("8 MiB response: %d B, equal %v, %v", len(got), bytes.Equal(got, want), err)
	}
}

// A 64 MiB stream echoed by guest 2, written with writes of random sizes
// and read at the same time, every byte checked; a read deadline in the
// past fails the next Read at once with a timeout.
func TestDeviceStreamEcho(t *testing.T) {
	_, addr := peerServer(t, "stream", 7601)
	c, err := Dial("rdma", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const total = 64 << 20
	const seed = 99
	werr := make(chan error, 1)
	go func() {
		r := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 3<<20)
		for off := 0; off < total; {
			n := min(logUniform(r, len(buf)), total-off)
			pattern(buf[:n], seed, off)
			if _, err := c.Write(buf[:n]); err != nil {
				werr <- err
				return
			}
			off += n
		}
		werr <- nil
	}()
	r := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 2<<20)
	want := make([]byte, len(buf))
	start := time.Now()
	for off := 0; off < total; {
		n, err := c.Read(buf[:min(logUniform(r, len(buf)), total-off)])
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		pattern(want[:n], seed, off)
		if !bytes.Equal(buf[:n], want[:n]) {
			t.Fatalf("bytes %d..%d differ", off, off+n)
		}
		off += n
	}
	el := time.Since(start)
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	t.Logf("64 MiB echoed in %v (%.1f MB/s each way, guest time under TCG)", el.Round(time.Millisecond), total/1e6/el.Seconds())

	c.SetReadDeadline(time.Now().Add(-time.Second))
	t0 := time.Now()
	_, err = c.Read(buf[:10])
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past its deadline: %v, want a timeout net.Error", err)
	}
	if d := time.Since(t0); d > 100*time.Millisecond {
		t.Errorf("Read past its deadline took %v, want at once", d)
	}
	// The connection goes on after an idle timeout.
	c.SetReadDeadline(time.Time{})
	if _, err := c.Write([]byte("again")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf[:5]); err != nil || string(buf[:5]) != "again" {
		t.Fatalf("after the timeout: %q, %v", buf[:5], err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
	}
	_ = context.Background
}

// restartRun sends GET /who from 4 workers in a loop over keep-alive
// connections, stops the designated server of two (sig: TERM, a graceful
// http.Server.Shutdown, or KILL) after 500 answers, and goes on to at
// least total answers. It returns the failures, who answered how often,
// and the gap: from the last answer of the designated server to the first
// of the standby (the signal itself goes through the harness, which takes
// a while under TCG).
func restartRun(t *testing.T, port int, sig string, mode qp.Mode, total int) (failed []error, answers map[string]int, gap time.Duration) {
	a, addr := peerServer(t, "http", port, "RDMABIND_NET_NAME=a", "RDMABIND_NET_WANT=designated")
	peerServer(t, "http", port, "RDMABIND_NET_NAME=b")
	client, tr := httpClient(4)
	d := &Dialer{Timeout: 15 * time.Second, Options: &qp.Options{Mode: mode}}
	tr.DialContext = d.DialContext
	defer tr.CloseIdleConnections()
	var mu sync.Mutex
	answers = map[string]int{}
	var signalled, lastA, firstB time.Time
	done := 0
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if done >= total {
					mu.Unlock()
					return
				}
				mu.Unlock()
				resp, err := client.Get("http://" + addr + "/who")
				var who []byte
				if err == nil {
					who, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				mu.Lock()
				if err != nil {
					failed = append(failed, fmt.Errorf("%v after the signal: %w", time.Since(signalled), err))
				} else {
					answers[string(who)]++
					switch {
					case string(who) == "a":
						lastA = time.Now()
					case firstB.IsZero():
						firstB = time.Now()
					}
				}
				done++
				stop := done == 500
				if stop {
					signalled = time.Now()
				}
				mu.Unlock()
				if stop {
					a.Signal(sig)
				}
			}
		}()
	}
	wg.Wait()
	if !firstB.IsZero() && firstB.After(lastA) {
		gap = firstB.Sub(lastA)
	}
	return failed, answers, gap
}

// Graceful restart: two servers on one port, GET requests in a loop from
// guest 1, dialling over rdma_cm and over the rendezvous; SIGTERM to the
// designated one (http.Server.Shutdown): no request fails, and both
// answered.
func TestDeviceHTTPGracefulRestart(t *testing.T) {
	for i, mode := range []qp.Mode{qp.ModeCM, qp.ModeTCP} {
		t.Run(mode.String(), func(t *testing.T) {
			failed, answers, gap := restartRun(t, 7603+i, "TERM", mode, 2000)
			t.Logf("SIGTERM, dials over %v: answers %v, %d failed, the standby answered %v after the last answer of the designated one", mode, answers, len(failed), gap)
			for _, err := range failed {
				t.Error(err)
			}
			if answers["a"] == 0 || answers["b"] == 0 {
				t.Errorf("answers %v: both servers must have answered", answers)
			}
		})
	}
}

// SIGKILL instead: only the requests in flight on the killed server (at
// most one per worker) fail; the gap before the standby answers is
// reported.
func TestDeviceHTTPKillTakeover(t *testing.T) {
	for i, mode := range []qp.Mode{qp.ModeCM, qp.ModeTCP} {
		t.Run(mode.String(), func(t *testing.T) {
			failed, answers, gap := restartRun(t, 7605+i, "KILL", mode, 1000)
			t.Logf("SIGKILL, dials over %v: answers %v, %d failed, the standby answered %v after the last answer of the killed one", mode, answers, len(failed), gap)
			for _, err := range failed {
				t.Log(err)
			}
			if len(failed) > 4 {
				t.Errorf("%d requests failed, want at most the 4 in flight", len(failed))
			}
			if answers["b"] == 0 {
				t.Errorf("answers %v: the standby never answered", answers)
			}
		})
	}
}
