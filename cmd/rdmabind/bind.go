package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/qp"
)

func init() {
	commands["bind"] = command{"bind ADDR:PORT [--listen [--backlog N] [--echo]], print JSON lines (bound, listening, accept), hold until signalled", runBind}
}

// boundEvent is the JSON line bind prints once bound.
type boundEvent struct {
	Event  string `json:"event"` // "bound"
	PID    int    `json:"pid"`
	Socket string `json:"socket"`
	bindcore.Endpoint
	PhasesNS map[string]int64 `json:"phases_ns"`
}

// listenEvent is the line printed once listening ("listening", with the
// role Listen gave) and when a standby takes over ("designated").
type listenEvent struct {
	Event  string         `json:"event"`
	PID    int            `json:"pid"`
	Socket string         `json:"socket"`
	Local  netip.AddrPort `json:"local"`
	bindcore.ListenState
}

// acceptEvent is the line printed per accepted connection. transport is
// "tcp" (a connection of the kernel TCP listener, closed after the report)
// or "rdma" (an rdma_cm connection request, rejected after the report);
// with --echo, "qp-cm" or "qp-tcp": a connected queue pair (qp.Listener,
// over rdma_cm or the TCP rendezvous) that echoes every message until the
// peer closes, then prints a "closed" line.
type acceptEvent struct {
	Event     string `json:"event"` // "accept"
	Transport string `json:"transport"`
	PID       int    `json:"pid"`
	Socket    string `json:"socket"`
	Local     string `json:"local"`
	Remote    string `json:"remote,omitempty"`
	Device    string `json:"device,omitempty"`
	Port      int    `json:"port,omitempty"`
	Rejected  bool   `json:"rejected,omitempty"`
}

// closedEvent is printed (with --echo) when an echoed connection ends.
type closedEvent struct {
	Event    string `json:"event"` // "closed"
	PID      int    `json:"pid"`
	Remote   string `json:"remote"`
	Messages int    `json:"messages"`
	Bytes    int64  `json:"bytes"`
	Error    string `json:"error,omitempty"`
}

// deviceEvent is a change of the device under the socket.
type deviceEvent struct {
	Event  string `json:"event"` // "down", "up"
	PID    int    `json:"pid"`
	Socket string `json:"socket"`
	Local  string `json:"local"`
	Device string `json:"device"`
	Error  string `json:"error,omitempty"` // with down: the spec's code
	Detail string `json:"detail,omitempty"`
}

// lineWriter writes JSON lines from several goroutines, one whole line at a
// time.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (lw *lineWriter) write(v any) error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return writeJSON(lw.w, v)
}

func runBind(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bind", flag.ContinueOnError)
	fs.Bool("json", true, "print JSON (bind always does)")
	regDir := fs.String("registry", os.Getenv("RDMABIND_REGISTRY_DIR"), "registry directory (default: the user's own, /run/rdmabind for root; env RDMABIND_REGISTRY_DIR)")
	listen := fs.Bool("listen", false, "listen after binding: designated listener of the port, or standby; print a line per accepted connection")
	backlog := fs.Int("backlog", bindcore.DefaultBacklog, "listen backlog (with --listen)")
	echo := fs.Bool("echo", false, "with --listen: accept queue-pair connections (rdma_cm and the TCP rendezvous, qp/) and echo their messages")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	ap, err := netip.ParseAddrPort(pos[0])
	if err != nil {
		return fmt.Errorf("%q is not ADDR:PORT (10.77.0.1:5000 or [fd77::1]:5000): %w", pos[0], err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	b, err := bindcore.Open(bindcore.Options{RegistryDir: *regDir, TracePhases: true})
	if err != nil {
		return err
	}
	defer b.Close()
	family := bindcore.AFInet6
	if ap.Addr().Is4() {
		family = bindcore.AFInet
	}
	s, err := b.Socket(family)
	if err != nil {
		return err
	}
	// Through the codec, as WSPBind receives it.
	sa, err := bindcore.SockaddrFromAddrPort(family, ap)
	if err != nil {
		return err
	}
	if err := s.Bind(sa.Encode()); err != nil {
		return err
	}
	ep, err := s.Endpoint()
	if err != nil {
		return err
	}
	handle := fmt.Sprintf("%#x", s.Handle())
	ev := boundEvent{Event: "bound", PID: os.Getpid(), Socket: handle, Endpoint: ep, PhasesNS: map[string]int64{}}
	for i, ns := range s.BindPhases() {
		ev.PhasesNS[bindcore.PhaseNames[i]] = ns
	}
	out := &lineWriter{w: stdout}
	if err := out.write(ev); err != nil {
		return err
	}
	// The device under the socket: {"event":"down",...} when it goes,
	// {"event":"up",...} when a device serves the socket again.
	stopWatch, err := s.WatchDevice(func(d bindcore.DeviceEvent) {
		de := deviceEvent{Event: "up", PID: os.Getpid(), Socket: handle, Local: ep.Local.String(), Device: d.Device}
		if d.Lost {
			de.Event, de.Error = "down", wsa.WSAENETDOWN.String()
			de.Detail = fmt.Sprintf("the RDMA device %s serving %s went away: the socket stays bound (its port reserved) until it is closed", d.Device, ep.Local.Addr())
		}
		out.write(de)
	})
	if err != nil {
		return err
	}
	defer stopWatch()
	if !*listen {
		<-ctx.Done()
		return s.Close()
	}
	if err := s.Listen(*backlog); err != nil {
		return err
	}
	st, err := s.ListenState()
	if err != nil {
		return err
	}
	if err := out.write(listenEvent{Event: "listening", PID: os.Getpid(), Socket: handle, Local: ep.Local, ListenState: st}); err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if st.Role == registry.RoleDesignated {
			return
		}
		if s.WaitDesignated(ctx) == nil {
			now, _ := s.ListenState()
			out.write(listenEvent{Event: "designated", PID: os.Getpid(), Socket: handle, Local: ep.Local, ListenState: now})
		}
	}()
	if *echo {
		l, err := qp.NewListener(s, nil)
		if err != nil {
			s.Close()
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conns sync.WaitGroup
			for {
				c, err := l.Accept(ctx)
				if err != nil {
					break
				}
				out.write(acceptEvent{Event: "accept", Transport: "qp-" + c.Mode().String(), PID: os.Getpid(), Socket: handle,
					Local: ep.Local.String(), Remote: c.RemoteAddr().String()})
				conns.Add(1)
				go func() {
					defer conns.Done()
					out.write(echoConn(ctx, c))
				}()
			}
			l.Close()
			conns.Wait()
		}()
	} else {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for {
				c, err := s.AcceptTCP(ctx)
				if err != nil {
					return
				}
				out.write(acceptEvent{Event: "accept", Transport: "tcp", PID: os.Getpid(), Socket: handle,
					Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()})
				c.Close()
			}
		}()
		go func() {
			defer wg.Done()
			for {
				r, err := s.AcceptRDMA(ctx)
				if err != nil {
					return
				}
				out.write(acceptEvent{Event: "accept", Transport: "rdma", PID: os.Getpid(), Socket: handle,
					Local: ep.Local.String(), Device: r.ID.DeviceName(), Port: r.ID.PortNum(), Rejected: true})
				r.ID.Close()
			}
		}()
	}
	<-ctx.Done()
	wg.Wait()
	return s.Close()
}

// echoConn sends every message of c back until the peer closes it (or ctx
// ends), closes c and says how it ended.
func echoConn(ctx context.Context, c *qp.Conn) closedEvent {
	ev := closedEvent{Event: "closed", PID: os.Getpid(), Remote: c.RemoteAddr().String()}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	buf := make([]byte, 2<<20)
	var err error
	for {
		var n int
		if n, err = c.Recv(buf); err != nil {
			break
		}
		if err = c.Send(buf[:n]); err != nil {
			break
		}
		ev.Messages++
		ev.Bytes += int64(n)
	}
	if cerr := c.Close(); err == nil || errors.Is(err, io.EOF) || ctx.Err() != nil {
		err = cerr
	}
	if err != nil {
		ev.Error = err.Error()
	}
	return ev
}
