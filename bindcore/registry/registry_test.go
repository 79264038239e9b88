//go:build linux

package registry

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rdmabind/rdmabind/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestClaimReleaseList(t *testing.T) {
	testutil.CheckFDs(t)
	dir := t.TempDir()
	r, err := Open(Options{Dir: dir, Netns: testNetns})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, want := r.Path(), dir+"/rdmabind-netns-4026531840-uid-"+strconv.Itoa(os.Geteuid())+".reg"; got != want {
		t.Errorf("Path %q, want %q", got, want)
	}
	var st unix.Stat_t
	if err := unix.Stat(r.Path(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o600 || st.Size != HeaderSize+DefaultRecords*RecordSize+int64(IndexGroups(DefaultRecords))*IndexGroupSize {
		t.Errorf("file mode %#o size %d, want 0600 and %d", st.Mode&0o7777, st.Size, HeaderSize+DefaultRecords*RecordSize+int64(IndexGroups(DefaultRecords))*IndexGroupSize)
	}

	c1, err := r.Claim(ClaimRequest{Addr: a4, Port: 5000, SocketID: 77})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := r.Claim(ClaimRequest{Addr: a6, Port: 5001, Role: RoleListening})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("List: %v, want 2 records", recs)
	}
	got := recs[0]
	if got.AddrPort().String() != "10.0.0.1:5000" || got.Role != RoleBound || got.SocketID != 77 ||
		got.PID != uint32(unix.Getpid()) || got.UID != uint32(unix.Geteuid()) || got.Netns != testNetns ||
		got.StartTime == 0 || got.Generation == 0 || got.State != StateUsed {
		t.Errorf("record %+v", got)
	}
	if got != c1.Record() {
		t.Errorf("List %+v, Claim.Record %+v", got, c1.Record())
	}
	if recs[1].Role != RoleListening || recs[1].Addr != a6 {
		t.Errorf("record %+v", recs[1])
	}
	if err := c2.SetRole(RoleDesignated); err != nil {
		t.Fatal(err)
	}
	if recs, _ := r.List(); recs[1].Role != RoleDesignated {
		t.Errorf("after SetRole: %+v", recs[1])
	}
	if err := c1.Release(); err != nil {
		t.Fatal(err)
	}
	if err := c1.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	mustErr(t, c1.SetRole(RoleListening), ErrClosed)
	recs, _ = r.List()
	if len(recs) != 1 || recs[0].Port != 5001 {
		t.Fatalf("after Release: %v", recs)
	}
	// The released slot is reused, with a new generation.
	c3, err := r.Claim(ClaimRequest{Addr: a4, Port: 5002})
	if err != nil {
		t.Fatal(err)
	}
	if c3.Record().Slot != c1.Record().Slot || c3.Record().Generation != c1.Record().Generation+1 {
		t.Errorf("reuse: %v after %v", c3.Record(), c1.Record())
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Close released the claims.
	r2 := openTest(t, dir)
	if recs, err := r2.List(); err != nil || len(recs) != 0 {
		t.Fatalf("after Close: %v %v", recs, err)
	}
	r2.Close()
	mustErr(t, c2.Release(), nil)
	_, err = r.Claim(ClaimRequest{Addr: a4, Port: 1})
	mustErr(t, err, ErrClosed)
	_, err = r.List()
	mustErr(t, err, ErrClosed)
}

func TestClaimInvalid(t *testing.T) {
	r := openTest(t, t.TempDir())
	for _, req := range []ClaimRequest{
		{Port: 1},
		{Addr: a4},
		{Addr: a4, Port: 1, Share: 7},
	} {
		_, err := r.Claim(req)
		mustErr(t, err, ErrInvalid)
	}
	if _, err := r.FindFreePort(a4, 0, 10); !errors.Is(err, ErrInvalid) {
		t.Errorf("FindFreePort lo 0: %v", err)
	}
	if _, err := r.FindFreePort(a4, 10, 9); !errors.Is(err, ErrInvalid) {
		t.Errorf("FindFreePort lo > hi: %v", err)
	}
}

func TestSameUserShares(t *testing.T) {
	dir := t.TempDir()
	r1 := openTest(t, dir)
	r2 := openTest(t, dir) // its own open file descriptions: as another process
	var claims []*Claim
	for _, c := range []struct {
		r   *Registry
		req ClaimRequest
	}{
		{r1, ClaimRequest{Addr: a4, Port: 7000}},
		{r1, ClaimRequest{Addr: a4, Port: 7000, Role: RoleListening}},
		{r2, ClaimRequest{Addr: a4, Port: 7000}},
		{r2, ClaimRequest{Addr: any4, Port: 7000}},
		{r1, ClaimRequest{Addr: any6, Port: 7000, DualStack: true}},
		{r2, ClaimRequest{Addr: b4, Port: 7000}},
	} {
		cl, err := c.r.Claim(c.req)
		if err != nil {
			t.Fatalf("%+v: %v", c.req, err)
		}
		claims = append(claims, cl)
	}
	recs, err := r1.List()
	if err != nil || len(recs) != len(claims) {
		t.Fatalf("List: %v %v", recs, err)
	}
	// Exclusive: refused while the port is shared; and refuses others.
	_, err = r2.Claim(ClaimRequest{Addr: a4, Port: 7000, Share: Exclusive})
	mustConflict(t, err)
	mustErr(t, err, unix.EADDRINUSE)
	ex, err := r2.Claim(ClaimRequest{Addr: a6, Port: 7001, Share: Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r1.Claim(ClaimRequest{Addr: any6, Port: 7001})
	mustConflict(t, err)
	if !strings.Contains(err.Error(), "an exclusive claim") {
		t.Errorf("message: %v", err)
	}
	// No overlap: an IPv4 claim next to an exclusive IPv6 one (V6ONLY).
	if _, err := r1.Claim(ClaimRequest{Addr: any4, Port: 7001}); err != nil {
		t.Fatal(err)
	}
	ex.Release()
	if _, err := r1.Claim(ClaimRequest{Addr: any6, Port: 7001}); err != nil {
		t.Fatal(err)
	}
}

// TestOtherUserRecord plants a live claim of another uid (no root needed:
// the test writes the record and holds its lock itself).
func TestOtherUserRecord(t *testing.T) {
	r := openTest(t, t.TempDir())
	c, err := r.Claim(ClaimRequest{Addr: a4, Port: 8000})
	if err != nil {
		t.Fatal(err)
	}
	rec := c.Record()
	rec.UID, rec.PID = 4242, 31337
	var b [RecordSize]byte
	rec.encodeTo(&b)
	r.res.mem.write(rec.Slot, &b)

	for _, req := range []ClaimRequest{
		{Addr: a4, Port: 8000},
		{Addr: any4, Port: 8000},
		{Addr: any6, Port: 8000, DualStack: true},
	} {
		_, err = r.Claim(req)
		mustConflict(t, err)
		mustErr(t, err, unix.EADDRINUSE)
		if msg := err.Error(); !strings.Contains(msg, "pid 31337 (uid 4242)") || !strings.Contains(msg, "registry: claim ") {
			t.Errorf("message %q does not name the holder", msg)
		}
	}
	// Addresses that do not overlap it are free.
	for _, req := range []ClaimRequest{
		{Addr: b4, Port: 8000},
		{Addr: any6, Port: 8000},
		{Addr: a6, Port: 8000},
		{Addr: a4, Port: 8001},
	} {
		if _, err := r.Claim(req); err != nil {
			t.Errorf("%+v: %v", req, err)
		}
	}
	// Once its lock is gone, the other user's record is stale and reclaimed.
	c.Release() // writes the slot free, drops the lock
	rec.encodeTo(&b)
	r.res.mem.write(rec.Slot, &b) // stale again: used, no lock
	if _, err := r.Claim(ClaimRequest{Addr: a4, Port: 8000}); err != nil {
		t.Fatalf("stale record not reclaimed: %v", err)
	}
}

func TestFull(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(Options{Dir: dir, Netns: testNetns, Records: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var cs []*Claim
	for i := 0; i < 8; i++ {
		c, err := r.Claim(ClaimRequest{Addr: a4, Port: uint16(100 + i)})
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	_, err = r.Claim(ClaimRequest{Addr: a4, Port: 200})
	mustFull(t, err)
	mustErr(t, err, unix.ENOBUFS)
	cs[3].Release()
	c, err := r.Claim(ClaimRequest{Addr: a4, Port: 200})
	if err != nil {
		t.Fatal(err)
	}
	if c.Record().Slot != 3 {
		t.Errorf("slot %d, want the freed 3", c.Record().Slot)
	}
	// An existing file keeps its record count.
	r2, err := Open(Options{Dir: dir, Netns: testNetns, Records: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if r2.Records() != 8 {
		t.Errorf("Records %d, want the file's 8", r2.Records())
	}
}

func TestFindFreePort(t *testing.T) {
	r := openTest(t, t.TempDir())
	for p := uint16(40000); p < 40010; p++ {
		if p == 40007 {
			continue
		}
		if _, err := r.Claim(ClaimRequest{Addr: any4, Port: p}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		p, err := r.FindFreePort(a4, 40000, 40009)
		if err != nil || p != 40007 {
			t.Fatalf("FindFreePort: %d %v, want 40007", p, err)
		}
	}
	// IPv6 (V6ONLY claims of IPv4 do not overlap it): any port.
	if _, err := r.FindFreePort(a6, 40000, 40009); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Claim(ClaimRequest{Addr: b4, Port: 40007}); err != nil {
		t.Fatal(err)
	}
	if p, err := r.FindFreePort(a4, 40000, 40009); p != 40007 {
		t.Fatalf("FindFreePort next to 10.0.0.2:40007: %d %v, want 40007", p, err)
	}
	_, err := r.FindFreePort(any4, 40000, 40009) // the wildcard overlaps 10.0.0.2
	mustFull(t, err)
}

// TestConcurrent claims, lists and releases from many goroutines through
// two Registries (two sets of open file descriptions, as two processes);
// run with -race.
func TestConcurrent(t *testing.T) {
	testutil.CheckFDs(t)
	dir := t.TempDir()
	r1, err := Open(Options{Dir: dir, Netns: testNetns})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Open(Options{Dir: dir, Netns: testNetns})
	if err != nil {
		t.Fatal(err)
	}
	const G, N = 8, 300
	var wg sync.WaitGroup
	errc := make(chan error, G)
	for g := 0; g < G; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := r1
			if g%2 == 1 {
				r = r2
			}
			for i := 0; i < N; i++ {
				share := ShareSameUser
				port := uint16(9000 + i%4)
				if g == 0 {
					share, port = Exclusive, uint16(9100+i%8)
				}
				c, err := r.Claim(ClaimRequest{Addr: any4, Port: port, Share: share})
				if err != nil {
					errc <- err
					return
				}
				if i%7 == 0 {
					c.SetRole(RoleListening)
					c.Record()
				}
				if i%11 == 0 {
					if _, err := r.List(); err != nil {
						errc <- err
						return
					}
				}
				c.Release()
				c.Release()
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if recs, err := r1.List(); err != nil || len(recs) != 0 {
		t.Errorf("left: %v %v", recs, err)
	}
	r1.Close()
	r2.Close()
}

// A Fresh claim refuses a port any live claim holds, even one of the same
// user that would otherwise share; the record it stores shares as usual.
func TestClaimFresh(t *testing.T) {
	r := openTest(t, t.TempDir())
	c, err := r.Claim(ClaimRequest{Addr: a4, Port: 7100})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Claim(ClaimRequest{Addr: any4, Port: 7100, Fresh: true})
	if !errors.Is(err, ErrConflict) || !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), "port of its own") {
		t.Fatalf("fresh claim of a held port: %v", err)
	}
	f, err := r.Claim(ClaimRequest{Addr: a4, Port: 7101, Fresh: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Claim(ClaimRequest{Addr: a4, Port: 7101}); err != nil {
		t.Fatalf("sharing a port first claimed fresh: %v", err)
	}
	c.Release()
	f.Release()
}
