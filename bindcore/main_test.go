//go:build linux

package bindcore

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"

	"github.com/rdmabind/rdmabind/cgo/rdmacm"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// helperEnv makes the test binary a helper process (see helperMain).
const helperEnv = "RDMABIND_BINDCORE_HELPER"

// TestMain runs helper processes (those of listen_helper_test.go exit in
// its init already), and sets up the private namespaces when this is the
// copy of the test binary that a listen test runs in
// (testutil.RunInPrivateNS).
func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperMain(mode))
	}
	// The device hub's watcher (an inotify descriptor for the life of the
	// process) starts with the first rdma_cm event channel: start it
	// before any test counts descriptors.
	if ch, err := rdmacm.NewEventChannel(); err == nil {
		ch.Close()
	}
	testutil.InitPrivateNS()
	os.Exit(m.Run())
}

// helperReport is what a helper prints, as one JSON line, once bound.
type helperReport struct {
	PID    int    `json:"pid"`
	Local  string `json:"local,omitempty"`
	Device string `json:"device,omitempty"`
	Error  string `json:"error,omitempty"`
	Code   int    `json:"code,omitempty"`
	// Records is how many live records the helper's registry lists once
	// it is bound (or has failed).
	Records int `json:"records"`
}

// helperMain binds the address in RDMABIND_BINDCORE_ADDR with the registry
// in RDMABIND_BINDCORE_DIR, prints a helperReport line on stdout, then, in
// mode "hold", holds the binding until its stdin closes or it is signalled;
// in mode "once" it exits at once. It exits 0 when bound, 3 when Bind
// failed (the report says how).
func helperMain(mode string) int {
	b, err := Open(Options{RegistryDir: os.Getenv("RDMABIND_BINDCORE_DIR")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer b.Close()
	ap := netip.MustParseAddrPort(os.Getenv("RDMABIND_BINDCORE_ADDR"))
	fam := AFInet
	if ap.Addr().Is6() {
		fam = AFInet6
	}
	s, err := b.Socket(fam)
	if err == nil {
		err = s.BindAddrPort(ap)
	}
	rep := helperReport{PID: os.Getpid()}
	if recs, lerr := b.Registry().List(); lerr == nil {
		rep.Records = len(recs)
	}
	if err != nil {
		rep.Error = err.Error()
		if we, ok := asWSA(err); ok {
			rep.Code = int(we)
		}
		json.NewEncoder(os.Stdout).Encode(rep)
		return 3
	}
	ep, _ := s.Endpoint()
	rep.Local, rep.Device = ep.Local.String(), ep.Device
	json.NewEncoder(os.Stdout).Encode(rep)
	if mode == "hold" {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		done := make(chan struct{})
		go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
		select {
		case <-sig:
		case <-done:
		}
	}
	return 0
}

func readReport(r *bufio.Reader) (helperReport, error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return helperReport{}, fmt.Errorf("helper report: %w (read %q)", err, line)
	}
	var rep helperReport
	err = json.Unmarshal(line, &rep)
	return rep, err
}

func itoa(n int) string { return strconv.Itoa(n) }
