package qp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// helperEnv makes the test binary a helper process (helperMain): in guest
// 2 of a two-guest run, started with testutil.StartPeer.
const helperEnv = "RDMABIND_QP_HELPER"

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(helperMain(role))
	}
	// The device hub's watcher (an inotify descriptor for the life of the
	// process) starts with the first rdma_cm event channel: start it
	// before any test counts descriptors.
	if ch, err := rdmacm.NewEventChannel(); err == nil {
		ch.Close()
	}
	code := m.Run()
	stopBenchPeer()
	os.Exit(code)
}

// Control messages the echo helper understands (everything else it echoes).
var (
	msgWho = []byte("\x00who")
	msgDie = []byte("\x00die")
	// msgSink switches the connection to sinking: the helper receives
	// without echoing until msgEnd, then sends the number of messages and
	// bytes it got (a bandwidth run).
	msgSink = []byte("\x00sink")
	msgEnd  = []byte("\x00end")
	// msgEnds asks for how the helper's connections that broke ended:
	// one line each, "<ms> ms after its last message: <error>".
	msgEnds = []byte("\x00ends")
)

// helperEnds is what msgEnds answers.
var helperEnds struct {
	sync.Mutex
	lines []string
}

// helperMain runs a helper role:
//
//   - "echo": binds RDMABIND_QP_ADDR, listens, accepts over both transports
//     and echoes every message of every connection; answers msgWho with
//     RDMABIND_QP_NAME, and dies (SIGKILL) on msgDie; answers msgEnds with
//     how its connections that broke ended. It creates the file
//     RDMABIND_QP_READY with its role once listening (and designated, for
//     RDMABIND_QP_WANT=designated).
//   - "dialer": binds RDMABIND_QP_ADDR, dials RDMABIND_QP_DIAL (rdma_cm) and
//     echoes on that connection; creates RDMABIND_QP_READY once connected.
//
// It runs until SIGTERM.
func helperMain(role string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "qp helper %s: %v\n", role, err)
		return 2
	}
	b, err := bindcore.Open(bindcore.Options{})
	if err != nil {
		return fail(err)
	}
	defer b.Close()
	ap := netip.MustParseAddrPort(os.Getenv("RDMABIND_QP_ADDR"))
	s, err := b.Socket(familyOf(ap))
	if err != nil {
		return fail(err)
	}
	if err := s.BindAddrPort(ap); err != nil {
		return fail(err)
	}
	name := os.Getenv("RDMABIND_QP_NAME")
	ready := func(what string) {
		if p := os.Getenv("RDMABIND_QP_READY"); p != "" {
			os.WriteFile(p+".tmp", []byte(what), 0o644)
			os.Rename(p+".tmp", p)
		}
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	switch role {
	case "echo":
		if err := s.Listen(128); err != nil {
			return fail(err)
		}
		l, err := NewListener(s, helperOptions())
		if err != nil {
			return fail(err)
		}
		defer l.Close()
		st, _ := s.ListenState()
		if os.Getenv("RDMABIND_QP_WANT") == "designated" {
			<-s.Designated()
			st.RoleName = "designated"
		}
		ready(st.RoleName)
		go func() {
			for {
				c, err := l.Accept(context.Background())
				if err != nil {
					return
				}
				go echo(c, name)
			}
		}()
		go func() {
			for err := range l.SetupErrors() {
				fmt.Fprintf(os.Stderr, "qp helper %s: %v\n", name, err)
			}
		}()
	case "dialer":
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, err := Dial(ctx, s, netip.MustParseAddrPort(os.Getenv("RDMABIND_QP_DIAL")), helperOptions())
		if err != nil {
			return fail(err)
		}
		ready("connected")
		go echo(c, name)
	default:
		return fail(fmt.Errorf("unknown role"))
	}
	<-term
	return 0
}

// helperOptions: RDMABIND_QP_SPIN sets Options.Spin (a duration),
// RDMABIND_QP_BULK Options.Bulk (-1: off), for the helpers and the tests.
func helperOptions() *Options {
	o := &Options{}
	if d, err := time.ParseDuration(os.Getenv("RDMABIND_QP_SPIN")); err == nil {
		o.Spin = d
	}
	if n, err := strconv.Atoi(os.Getenv("RDMABIND_QP_BULK")); err == nil {
		o.Bulk = n
	}
	return o
}

// testOptions are helperOptions in mode.
func testOptions(mode Mode) *Options {
	o := helperOptions()
	o.Mode = mode
	return o
}

func familyOf(ap netip.AddrPort) bindcore.Family { return bindcore.FamilyOf(ap.Addr()) }

// echo echoes c's messages until EOF or an error, then closes it.
func echo(c *Conn, name string) {
	defer c.Close()
	buf := make([]byte, 2<<20)
	last := time.Now()
	ended := func(err error) {
		fmt.Fprintf(os.Stderr, "qp helper %s: echo: %v\n", name, err)
		helperEnds.Lock()
		helperEnds.lines = append(helperEnds.lines, fmt.Sprintf("%d ms after its last message: %v", time.Since(last).Milliseconds(), err))
		helperEnds.Unlock()
	}
	for {
		n, err := c.Recv(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				ended(err)
			}
			return
		}
		last = time.Now()
		msg := buf[:n]
		switch string(msg) {
		case string(msgWho):
			msg = []byte(name)
		case string(msgEnds):
			helperEnds.Lock()
			msg = []byte(strings.Join(helperEnds.lines, "\n"))
			helperEnds.Unlock()
		case string(msgDie):
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		case string(msgSink):
			var msgs, total int
			for {
				n, err := c.Recv(buf)
				if err != nil {
					return
				}
				if string(buf[:n]) == string(msgEnd) {
					break
				}
				msgs++
				total += n
			}
			msg = fmt.Appendf(nil, "%d %d", msgs, total)
		}
		if err := c.Send(msg); err != nil {
			ended(err)
			return
		}
	}
}
