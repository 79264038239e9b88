package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/rdmabind/rdmabind/bindcore"
)

func init() {
	commands["bind"] = command{"bind ADDR:PORT, print a JSON line when bound, hold until signalled", runBind}
}

// boundEvent is the JSON line bind prints once bound.
type boundEvent struct {
	Event  string `json:"event"` // "bound"
	PID    int    `json:"pid"`
	Socket string `json:"socket"`
	bindcore.Endpoint
	PhasesNS map[string]int64 `json:"phases_ns"`
}

func runBind(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bind", flag.ContinueOnError)
	fs.Bool("json", true, "print JSON (bind always does)")
	regDir := fs.String("registry", os.Getenv("RDMABIND_REGISTRY_DIR"), "registry directory (default /dev/shm; env RDMABIND_REGISTRY_DIR)")
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
	b, err := bindcore.Open(bindcore.Options{RegistryDir: *regDir})
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
	ev := boundEvent{Event: "bound", PID: os.Getpid(), Socket: fmt.Sprintf("%#x", s.Handle()), Endpoint: ep, PhasesNS: map[string]int64{}}
	for i, ns := range s.BindPhases() {
		ev.PhasesNS[bindcore.PhaseNames[i]] = ns
	}
	if err := writeJSON(stdout, ev); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Close()
}
