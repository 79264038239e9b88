//go:build linux

package bindcore

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/cgo/rdmacm"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// rawBind is the floor a Bind is compared with: what binding an RDMA socket
// and reserving its TCP port costs with no layer around it, i.e.
// rdma_create_id + rdma_set_option(REUSEADDR) + rdma_bind_addr on port 0,
// then socket(2) + SO_REUSEPORT + bind(2) of a TCP socket to the port it
// got. It returns a function that releases both.
func rawBind(b testing.TB, ch *rdmacm.EventChannel, addr netip.Addr) func() {
	id, err := ch.CreateID(rdmacm.PortSpaceTCP)
	if err != nil {
		b.Fatal(err)
	}
	if err := id.SetReuseAddr(true); err != nil {
		b.Fatal(err)
	}
	if err := id.Bind(netip.AddrPortFrom(addr, 0)); err != nil {
		b.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		b.Fatal(err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(id.LocalAddr().Port()), Addr: addr.As4()}); err != nil {
		b.Fatal(err)
	}
	return func() { unix.Close(fd); id.Close() }
}

func percentile(ns []int64, p float64) float64 {
	s := slices.Clone(ns)
	slices.Sort(s)
	return float64(s[int(p*float64(len(s)-1))])
}

// BenchmarkBindVsRaw runs a full Bind of a raw sockaddr_in (codec,
// resolution, registry, shadow TCP socket, rdma_cm) and the raw floor
// (rawBind) strictly alternately, as rdmabind bench does (bench/): every
// sample of either follows one of the other, so both see the same machine
// and the same aftermath. It reports the p50 of each and their ratio
// (target: p50 ratio <= 1.15). Port 0; Close is not timed. The phase
// breakdown comes from a Binder that traces, in a loop of its own after the
// timed one, so that it does not sit between the samples compared.
func BenchmarkBindVsRaw(b *testing.B) {
	testutil.SkipUnlessRDMA(b)
	addr := netip.MustParseAddr("10.77.0.1")
	if !testutil.InGuest() {
		b.Skip("needs the SoftRoCE guest's 10.77.0.1")
	}
	bd := openBinder(b)
	ch := bd.ch
	traced, err := Open(Options{RegistryDir: b.TempDir(), TracePhases: true})
	if err != nil {
		b.Fatal(err)
	}
	defer traced.Close()
	sa, err := SockaddrFromAddrPort(AFInet, netip.AddrPortFrom(addr, 0))
	if err != nil {
		b.Fatal(err)
	}
	name := sa.Encode()
	// Warm both paths (librdmacm opens device contexts on first use).
	rawBind(b, ch, addr)()
	s, _ := bd.Socket(AFInet)
	if err := s.Bind(name); err != nil {
		b.Fatal(err)
	}
	s.Close()
	full := make([]int64, 0, b.N)
	raw := make([]int64, 0, b.N)
	var phases [NumPhases][]int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, _ := bd.Socket(AFInet)
		t0 := time.Now()
		err := s.Bind(name)
		full = append(full, int64(time.Since(t0)))
		if err != nil {
			b.Fatal(err)
		}
		s.Close()

		t0 = time.Now()
		release := rawBind(b, ch, addr)
		raw = append(raw, int64(time.Since(t0)))
		release()
	}
	b.StopTimer()
	// The breakdown (untimed here).
	for i := 0; i < b.N; i++ {
		s, _ := traced.Socket(AFInet)
		if err := s.Bind(name); err != nil {
			b.Fatal(err)
		}
		for p, ns := range s.BindPhases() {
			phases[p] = append(phases[p], ns)
		}
		s.Close()
	}
	pf, pr := percentile(full, 0.5), percentile(raw, 0.5)
	b.ReportMetric(pf, "bind-p50-ns")
	b.ReportMetric(pr, "raw-p50-ns")
	b.ReportMetric(pf/pr, "ratio-p50")
	b.ReportMetric(percentile(full, 0.99)/percentile(raw, 0.99), "ratio-p99")
	for p, ns := range phases {
		b.ReportMetric(percentile(ns, 0.5), PhaseNames[p]+"-p50-ns")
	}
	b.ReportMetric(0, "ns/op")
}
