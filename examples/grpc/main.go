// Command grpc is a gRPC echo server and client over rdmabind: grpc-go,
// unchanged, on an rdmabind.Listen listener and an rdmabind.Dialer. It is a
// module of its own, so that the library does not depend on grpc-go.
//
//	grpc -listen 10.77.0.2:7700
//	grpc -connect 10.77.0.2:7700 -count 1000
//
// The client makes count unary calls and one streaming call of count
// messages, checks every answer, and prints what it did.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listenAddr := flag.String("listen", "", "serve on `ADDR:PORT`")
	connect := flag.String("connect", "", "client: call the server at `ADDR:PORT`")
	count := flag.Int("count", 1000, "client: unary calls, and messages of the streaming call")
	flag.Parse()
	var err error
	switch {
	case *listenAddr != "" && *connect == "":
		err = serve(*listenAddr)
	case *connect != "" && *listenAddr == "":
		err = client(*connect, *count)
	default:
		err = errors.New("give -listen ADDR:PORT or -connect ADDR:PORT")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "grpc: %v\n", err)
		os.Exit(1)
	}
}

func serve(addr string) error {
	ln, err := listen(addr)
	if err != nil {
		return err
	}
	s := newServer()
	fmt.Printf("serving grpc on rdma %s\n", ln.Addr())
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-term
		s.GracefulStop()
	}()
	return s.Serve(ln)
}

// message is the i-th test message: i+1 bytes (at most 64 KiB) of a
// pattern of i.
func message(i int) []byte {
	b := make([]byte, 1+i%(64<<10))
	for k := range b {
		b[k] = byte(i*31 + k)
	}
	return b
}

func client(addr string, count int) error {
	cc, err := dial(addr)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	for i := range count {
		m := message(i)
		got, err := echoUnary(ctx, cc, m)
		if err != nil {
			return fmt.Errorf("unary call %d: %w", i, err)
		}
		if !bytes.Equal(got, m) {
			return fmt.Errorf("unary call %d: %d bytes back, not the %d sent", i, len(got), len(m))
		}
	}
	fmt.Printf("unary: %d calls checked in %v\n", count, time.Since(start).Round(time.Millisecond))
	msgs := make([][]byte, count)
	for i := range msgs {
		msgs[i] = message(i)
	}
	start = time.Now()
	got, err := echoStream(ctx, cc, msgs)
	if err != nil {
		return fmt.Errorf("streaming call: %w", err)
	}
	if len(got) != len(msgs) {
		return fmt.Errorf("streaming call: %d messages back, %d sent", len(got), len(msgs))
	}
	for i := range msgs {
		if !bytes.Equal(got[i], msgs[i]) {
			return fmt.Errorf("streaming call: message %d differs", i)
		}
	}
	fmt.Printf("stream: %d messages checked in %v\n", count, time.Since(start).Round(time.Millisecond))
	return nil
}
