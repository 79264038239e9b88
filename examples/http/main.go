// Command http is an HTTP server and client over rdmabind: net/http,
// unchanged, on an rdmabind.Listen listener and an rdmabind.Dialer.
//
//	http -listen 10.77.0.2:8080
//	http -get http://10.77.0.2:8080/hello
//	http -get http://10.77.0.2:8080/bytes?n=1048576 -count 100
//
// The server answers GET /hello with a greeting naming its process, GET
// /bytes?n=N with N bytes, and echoes POST /echo. Several servers may
// listen on one address and port: one answers, the next takes over when it
// stops (SIGTERM: a graceful http.Server.Shutdown). The client prints each
// response's status and size, or the first error (exit 1).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/rdmabind/rdmabind"
)

func main() {
	listen := flag.String("listen", "", "serve HTTP on `ADDR:PORT`")
	get := flag.String("get", "", "client: GET `URL` over RDMA")
	count := flag.Int("count", 1, "client: requests to make")
	flag.Parse()
	var err error
	switch {
	case *listen != "" && *get == "":
		err = serve(*listen)
	case *get != "" && *listen == "":
		err = client(*get, *count)
	default:
		err = errors.New("give -listen ADDR:PORT or -get URL")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "http: %v\n", err)
		os.Exit(1)
	}
}

func serve(addr string) error {
	ln, err := rdmabind.Listen("rdma", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from pid %d over RDMA (you are %s)\n", os.Getpid(), r.RemoteAddr)
	})
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		buf := make([]byte, 64<<10)
		for n > 0 {
			k, err := w.Write(buf[:min(n, len(buf))])
			if err != nil {
				return
			}
			n -= k
		}
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("serving http on rdma %s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

func client(url string, count int) error {
	d := &rdmabind.Dialer{Timeout: 15 * time.Second}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 60 * time.Second}
	for range count {
		start := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		fmt.Printf("%s %d bytes in %v\n", resp.Status, n, time.Since(start).Round(time.Microsecond))
	}
	return nil
}
