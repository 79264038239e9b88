package rdmabind

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/cgo/rdmacm"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// helperEnv makes the test binary a helper process: in guest 2 of a
// two-guest run (testutil.StartPeer), or beside the test.
const helperEnv = "RDMABIND_NET_HELPER"

func TestMain(m *testing.M) {
	testutil.DispatchHelper(helperEnv, map[string]func() int{
		"http":   helperHTTP,
		"stream": helperStream,
	})
	// The device hub's watcher (an inotify descriptor for the life of the
	// process) starts with the first rdma_cm event channel: before any
	// test counts descriptors.
	if ch, err := rdmacm.NewEventChannel(); err == nil {
		ch.Close()
	}
	code := m.Run()
	stopBenchPeer()
	os.Exit(code)
}

// helperListen listens on RDMABIND_NET_ADDR and writes RDMABIND_NET_READY
// (the role) once listening; with RDMABIND_NET_WANT=designated, once it is
// the designated listener.
func helperListen() (*Listener, error) {
	ln, err := Listen("rdma", os.Getenv("RDMABIND_NET_ADDR"))
	if err != nil {
		return nil, err
	}
	l := ln.(*Listener)
	role := "listening"
	if os.Getenv("RDMABIND_NET_WANT") == "designated" {
		<-l.Socket().Designated()
		role = "designated"
	}
	if p := os.Getenv("RDMABIND_NET_READY"); p != "" {
		os.WriteFile(p+".tmp", []byte(role), 0o644)
		os.Rename(p+".tmp", p)
	}
	return l, nil
}

// helperHTTP serves HTTP on an rdmabind listener (testHandler) until
// SIGTERM, then shuts down gracefully (http.Server.Shutdown).
func helperHTTP() int {
	ln, err := helperListen()
	if err != nil {
		fmt.Fprintf(os.Stderr, "http helper: %v\n", err)
		return 2
	}
	srv := &http.Server{Handler: testHandler(os.Getenv("RDMABIND_NET_NAME"))}
	if a := os.Getenv("RDMABIND_NET_TCP_ADDR"); a != "" {
		// The same server over kernel TCP (plain TCP, not MPTCP), for
		// the benchmarks' side-by-side.
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		tl, err := lc.Listen(context.Background(), "tcp", a)
		if err != nil {
			fmt.Fprintf(os.Stderr, "http helper: %v\n", err)
			return 2
		}
		go srv.Serve(tl)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case <-term:
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "http helper: shutdown: %v\n", err)
			return 1
		}
		return 0
	case err := <-done:
		fmt.Fprintf(os.Stderr, "http helper: serve: %v\n", err)
		return 1
	}
}

// testHandler: POST /echo echoes the body; GET /bytes?n=N&seed=S answers
// N bytes of pattern(S); GET /who answers name.
func testHandler(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "reading the body: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	})
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		seed, _ := strconv.ParseUint(r.URL.Query().Get("seed"), 10, 64)
		w.Header().Set("Content-Length", strconv.Itoa(n))
		b := make([]byte, min(n, 1<<20))
		for off := 0; off < n; off += len(b) {
			k := min(len(b), n-off)
			pattern(b[:k], seed, off)
			w.Write(b[:k])
		}
	})
	mux.HandleFunc("GET /who", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	})
	return mux
}

// pattern fills b with the bytes at offset off of the stream of seed.
func pattern(b []byte, seed uint64, off int) {
	for i := range b {
		x := seed*0x9e3779b97f4a7c15 + uint64(off+i)
		x ^= x >> 29
		x *= 0xbf58476d1ce4e5b9
		b[i] = byte(x >> 32)
	}
}

// helperStream echoes every connection's bytes (io.Copy) until SIGTERM.
func helperStream() int {
	ln, err := helperListen()
	if err != nil {
		fmt.Fprintf(os.Stderr, "stream helper: %v\n", err)
		return 2
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				io.Copy(c, c)
			}(c)
		}
	}()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	<-term
	ln.Close()
	return 0
}
