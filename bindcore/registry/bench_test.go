//go:build linux

package registry

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/internal/ofdlock"
)

// withLive opens a registry in a fresh directory holding n live claims of
// other ports (same user: they are scanned and checked, never conflict).
func withLive(b *testing.B, n int) *Registry {
	b.Helper()
	r, err := Open(Options{Dir: b.TempDir(), Netns: testNetns})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	for i := 0; i < n; i++ {
		if _, err := r.Claim(ClaimRequest{Addr: b4, Port: uint16(20000 + i)}); err != nil {
			b.Fatal(err)
		}
	}
	return r
}

// BenchmarkClaimRelease: one Claim and its Release, with 0, 64 and 1024
// other live claims in the table.
func BenchmarkClaimRelease(b *testing.B) {
	for _, live := range []int{0, 64, 1024} {
		b.Run(fmt.Sprintf("live=%d", live), func(b *testing.B) {
			r := withLive(b, live)
			req := ClaimRequest{Addr: a4, Port: 5000, SocketID: 1}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c, err := r.Claim(req)
				if err != nil {
					b.Fatal(err)
				}
				c.Release()
			}
		})
	}
}

// BenchmarkClaimReleaseParallel: GOMAXPROCS goroutines of one process
// claiming and releasing one port (serialized by the registry lock).
func BenchmarkClaimReleaseParallel(b *testing.B) {
	r := withLive(b, 0)
	b.RunParallel(func(pb *testing.PB) {
		req := ClaimRequest{Addr: a4, Port: 5000, SocketID: 1}
		for pb.Next() {
			c, err := r.Claim(req)
			if err != nil {
				b.Error(err)
				return
			}
			c.Release()
		}
	})
}

// BenchmarkClaimReleaseLatency times every Claim and Release with
// time.Now and reports percentiles (ns) of Claim, Release and the pair,
// and the cost of the two time.Now calls around an empty operation
// ("clock"), which every sample includes.
func BenchmarkClaimReleaseLatency(b *testing.B) {
	r := withLive(b, 0)
	req := ClaimRequest{Addr: a4, Port: 5000, SocketID: 1}
	claim := make([]time.Duration, 0, b.N)
	rel := make([]time.Duration, 0, b.N)
	pair := make([]time.Duration, 0, b.N)
	clock := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		c, err := r.Claim(req)
		t1 := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		c.Release()
		t2 := time.Now()
		t3 := time.Now()
		claim = append(claim, t1.Sub(t0))
		rel = append(rel, t2.Sub(t1))
		pair = append(pair, t2.Sub(t0))
		clock = append(clock, t3.Sub(t2))
	}
	b.StopTimer()
	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		p := func(q float64) float64 { return float64(d[min(len(d)-1, int(q*float64(len(d))))].Nanoseconds()) }
		b.ReportMetric(p(0.50), name+"-p50-ns")
		b.ReportMetric(p(0.99), name+"-p99-ns")
		if name != "clock" {
			b.ReportMetric(p(0.90), name+"-p90-ns")
			b.ReportMetric(p(0.999), name+"-p99.9-ns")
		}
	}
	report("claim", claim)
	report("release", rel)
	report("pair", pair)
	report("clock", clock)
}

// BenchmarkList: List of 64 live claims (one F_OFD_GETLK per record).
func BenchmarkList(b *testing.B) {
	for _, live := range []int{1, 64} {
		b.Run(fmt.Sprintf("live=%d", live), func(b *testing.B) {
			r := withLive(b, live)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				recs, err := r.List()
				if err != nil || len(recs) != live {
					b.Fatal(len(recs), err)
				}
			}
		})
	}
}

// BenchmarkOFDLockUnlock is the floor: one F_OFD_SETLK and one F_UNLCK on
// the registry file (ofdlock.Set and Unlock). A Claim makes one such call
// (its slot lock) and a Release the other.
func BenchmarkOFDLockUnlock(b *testing.B) {
	r := withLive(b, 0)
	fd := r.res.fd
	off, n := slotRange(1)
	for i := 0; i < b.N; i++ {
		if err := ofdlock.Set(fd, ofdlock.Write, off, n); err != nil {
			b.Fatal(err)
		}
		ofdlock.Unlock(fd, off, n)
	}
}

// crowd fills r with n live claims of this user on ports 10000..59999 of
// 10.0.1.1, 10.0.2.1, ... (50,000 per address).
func crowd(b *testing.B, r *Registry, n int) {
	b.Helper()
	for i := 0; i < n; i++ {
		addr := netip.AddrFrom4([4]byte{10, 0, byte(i/50000 + 1), 1})
		if _, err := r.Claim(ClaimRequest{Addr: addr, Port: uint16(10000 + i%50000)}); err != nil {
			b.Fatalf("claim %d of the crowd: %v", i, err)
		}
	}
}

// BenchmarkClaimLive: a Claim and its Release of 10.0.1.1:5000 while 1,000,
// 10,000 and 100,000 live claims of the user hold other ports, in a
// registry of 2^17 records (the scale curve of docs/bench.md). claim-ns is
// the Claim alone. keep=true is the default (the Release keeps the slot's
// lock, the next Claim makes no fcntl); keep=false makes every Claim take
// its slot lock (F_OFD_SETLK) and every Release drop it.
func BenchmarkClaimLive(b *testing.B) {
	for _, keep := range []bool{true, false} {
		for _, live := range []int{1000, 10000, 100000} {
			b.Run(fmt.Sprintf("keep=%v/live=%d", keep, live), func(b *testing.B) {
				defer func(old bool) { keepSlots = old }(keepSlots)
				keepSlots = keep
				r, err := Open(Options{Dir: b.TempDir(), Netns: testNetns, Records: 1 << 17})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { r.Close() })
				crowd(b, r, live)
				req := ClaimRequest{Addr: netip.MustParseAddr("10.0.1.1"), Port: 5000, SocketID: 1}
				var claim time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					t0 := time.Now()
					c, err := r.Claim(req)
					claim += time.Since(t0)
					if err != nil {
						b.Fatal(err)
					}
					c.Release()
				}
				b.ReportMetric(float64(claim.Nanoseconds())/float64(b.N), "claim-ns")
			})
		}
	}
}
