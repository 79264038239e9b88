package steer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenRefusesPlantedPinDirs: a pin directory that is not this user's
// or root's, or that others can write, or a symbolic link in its place (a
// bpffs mounted where others may write) is refused with ErrNotPermitted,
// never used: pins found there could be anybody's.
func TestOpenRefusesPlantedPinDirs(t *testing.T) {
	skipUnlessBPF(t)
	for _, plant := range []string{"theirs", "writable", "link"} {
		root := t.TempDir()
		must(t, ensureBPFFS(root))
		defer unix.Unmount(root, unix.MNT_DETACH)
		k := testKey(t, "127.0.0.1:0")
		nsdir := filepath.Join(root, fmt.Sprint(k.NetNS))
		switch plant {
		case "theirs":
			must(t, os.Mkdir(nsdir, 0o700))
			must(t, os.Chown(nsdir, 65534, 65534))
		case "writable":
			must(t, os.Mkdir(nsdir, 0o700))
			must(t, os.Chmod(nsdir, 0o777))
		case "link":
			other := filepath.Join(root, "elsewhere")
			must(t, os.Mkdir(other, 0o700))
			must(t, os.Symlink(other, nsdir))
		}
		g, err := Open(k, &Options{Root: root})
		if err == nil {
			g.Release()
			t.Fatalf("%s: Open used %s", plant, nsdir)
		}
		if !errors.Is(err, ErrNotPermitted) {
			t.Fatalf("%s: %v, want ErrNotPermitted", plant, err)
		}
		t.Logf("%s: %v", plant, err)
	}
}
