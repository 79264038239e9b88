// Command echo is a message echo over a bound rdmabind socket: a server
// that binds and listens, accepting connections over rdma_cm and over the
// TCP rendezvous at once, and a client that binds its own address and port,
// connects in either mode, sends messages and checks every echo.
//
//	echo -listen 10.77.0.2:7470
//	echo -connect 10.77.0.2:7470 -bind 10.77.0.1:7480 -mode cm -count 1000 -size 65536
//	echo -connect 10.77.0.2:7470 -bind 10.77.0.1:7480 -mode tcp -count 1000 -size 65536
//
// Each line it prints is one outcome:
//
//	listening 10.77.0.2:7470 role=designated
//	accepted mode=cm local=10.77.0.2:7470 remote=10.77.0.1:7480
//	closed remote=10.77.0.1:7480 messages=1000 bytes=65536000
//	connected mode=cm local=10.77.0.1:7480 remote=10.77.0.2:7470 setup=2.1ms
//	echoed messages=1000 size=65536 checked=ok time=1.2s rtt_p50=1.1ms rtt_p99=2ms MB/s=109.2
//
// Errors print "echo: ..." on stderr and exit 1. The server runs until
// SIGINT or SIGTERM.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/qp"
)

func main() {
	listen := flag.String("listen", "", "serve: bind and listen on `ADDR:PORT`")
	backlog := flag.Int("backlog", 128, "listen backlog")
	connect := flag.String("connect", "", "client: connect to `ADDR:PORT`")
	bind := flag.String("bind", "", "client: bind to `ADDR:PORT` first (port 0: any)")
	mode := flag.String("mode", "cm", "client: connect over `cm` (rdma_cm) or tcp (the TCP rendezvous)")
	count := flag.Int("count", 1000, "client: messages to send")
	size := flag.Int("size", 4096, "client: bytes per message")
	flag.Parse()
	var err error
	switch {
	case *listen != "" && *connect == "":
		err = serve(*listen, *backlog)
	case *connect != "" && *listen == "":
		err = client(*connect, *bind, *mode, *count, *size)
	default:
		err = errors.New("give -listen ADDR:PORT, or -connect ADDR:PORT -bind ADDR:PORT")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "echo: %v\n", err)
		os.Exit(1)
	}
}

// open binds a socket of a new Binder to addr.
func open(addr string) (*bindcore.Binder, *bindcore.Socket, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, nil, err
	}
	b, err := bindcore.Open(bindcore.Options{})
	if err != nil {
		return nil, nil, err
	}
	s, err := b.Socket(bindcore.FamilyOf(ap.Addr()))
	if err == nil {
		err = s.BindAddrPort(ap)
	}
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	return b, s, nil
}

func serve(addr string, backlog int) error {
	b, s, err := open(addr)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := s.Listen(backlog); err != nil {
		return err
	}
	l, err := qp.NewListener(s, nil)
	if err != nil {
		return err
	}
	defer l.Close()
	st, _ := s.ListenState()
	ep, _ := s.Endpoint()
	fmt.Printf("listening %v role=%s\n", ep.Local, st.RoleName)
	go func() {
		if s.WaitDesignated(context.Background()) == nil && st.RoleName != "designated" {
			fmt.Printf("designated %v\n", ep.Local)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for {
		c, err := l.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		fmt.Printf("accepted mode=%s local=%v remote=%v\n", c.Mode(), c.LocalAddr(), c.RemoteAddr())
		go echo(c)
	}
}

func echo(c *qp.Conn) {
	defer c.Close()
	buf := make([]byte, 16<<20)
	var msgs, total int64
	for {
		n, err := c.Recv(buf)
		if err == nil {
			err = c.Send(buf[:n])
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				fmt.Printf("closed remote=%v messages=%d bytes=%d\n", c.RemoteAddr(), msgs, total)
			} else {
				fmt.Printf("failed remote=%v messages=%d error=%q\n", c.RemoteAddr(), msgs, err)
			}
			return
		}
		msgs++
		total += int64(n)
	}
}

func client(remote, local, modeName string, count, size int) error {
	mode, ok := qp.ParseMode(modeName)
	if !ok {
		return fmt.Errorf("-mode %q: want cm or tcp", modeName)
	}
	if local == "" {
		return errors.New("-bind ADDR:PORT is needed (the socket to connect from)")
	}
	ra, err := netip.ParseAddrPort(remote)
	if err != nil {
		return err
	}
	b, s, err := open(local)
	if err != nil {
		return err
	}
	defer b.Close()
	start := time.Now()
	c, err := qp.Dial(context.Background(), s, ra, &qp.Options{Mode: mode})
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Printf("connected mode=%s local=%v remote=%v setup=%v\n", c.Mode(), c.LocalAddr(), c.RemoteAddr(), time.Since(start).Round(time.Microsecond))
	out := make([]byte, size)
	in := make([]byte, size+1)
	rtts := make([]time.Duration, 0, count)
	start = time.Now()
	for i := range count {
		for k := range out {
			out[k] = byte(i + k*7)
		}
		t0 := time.Now()
		if err := c.Send(out); err != nil {
			return err
		}
		n, err := c.Recv(in)
		if err != nil {
			return err
		}
		rtts = append(rtts, time.Since(t0))
		if n != size || !bytes.Equal(in[:n], out) {
			return fmt.Errorf("message %d: echo of %d bytes differs from the %d sent", i, n, size)
		}
	}
	el := time.Since(start)
	slices.Sort(rtts)
	pct := func(p float64) time.Duration {
		if len(rtts) == 0 {
			return 0
		}
		return rtts[min(len(rtts)-1, int(p*float64(len(rtts))))]
	}
	fmt.Printf("echoed messages=%d size=%d checked=ok time=%v rtt_p50=%v rtt_p99=%v MB/s=%.1f\n",
		count, size, el.Round(time.Millisecond), pct(0.5).Round(time.Microsecond), pct(0.99).Round(time.Microsecond),
		float64(2*count*size)/el.Seconds()/1e6)
	return c.Close()
}
