package doctor

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestReadCaps(t *testing.T) {
	p := filepath.Join(t.TempDir(), "status")
	// CAP_NET_ADMIN (12), CAP_IPC_LOCK (14), CAP_BPF (39): 0x8000005000.
	os.WriteFile(p, []byte("Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000008000005000\n"), 0o644)
	c, err := readCaps(p)
	if err != nil || c != (Caps{BPF: true, NetAdmin: true, IPCLock: true}) {
		t.Errorf("readCaps: %+v %v", c, err)
	}
	os.WriteFile(p, []byte("Name:\tx\n"), 0o644)
	if _, err := readCaps(p); err == nil {
		t.Error("no CapEff: no error")
	}
}

func TestStatNode(t *testing.T) {
	n := statNode("/dev/null")
	if n.Err != nil || !n.Char || n.AccessErr != nil {
		t.Errorf("/dev/null: %+v", n)
	}
	p := filepath.Join(t.TempDir(), "rdma_cm")
	os.WriteFile(p, nil, 0o600)
	if n := statNode(p); n.Err != nil || n.Char {
		t.Errorf("a file: %+v", n)
	}
	if n := statNode(p + ".none"); !errors.Is(n.Err, fs.ErrNotExist) {
		t.Errorf("no node: %+v", n)
	}
}

// LiveFacts gathers every fact or says why not, on any host.
func TestLiveFacts(t *testing.T) {
	f := LiveFacts(context.Background())
	if f.Addrs == nil && f.AddrsErr == nil {
		t.Error("no addresses and no error")
	}
	if f.Memlock == (Limit{}) && f.MemlockErr == nil {
		t.Error("memlock zero without error")
	}
	if f.Netns == 0 && f.NetnsErr == nil {
		t.Error("netns unknown without error")
	}
	rep := Run(f, netip.Addr{})
	if len(rep.Checks) < 7 {
		t.Errorf("%d checks: %+v", len(rep.Checks), rep.Checks)
	}
	for _, c := range rep.Checks {
		t.Logf("%v %s: %s", c.OK, c.Name, c.Detail)
	}
}
