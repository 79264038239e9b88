package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/internal/rundir"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// TestLsIgnoresSquatters: uid 65534 plants a link to a file of root's, a
// file or a directory at every name in /dev/shm that rdmabind would use for
// root's registry (the registry file's old name, every fallback directory
// name); root's `rdmabind ls` with the default directory still works, and
// the file the links name is untouched.
func TestLsIgnoresSquatters(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	ns, err := registry.CurrentNetns()
	if err != nil {
		t.Fatal(err)
	}
	d, err := os.MkdirTemp("", "rdmabind-precious-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(d)
	os.Chmod(d, 0o755)
	precious := filepath.Join(d, "precious")
	if err := os.WriteFile(precious, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	names := []string{filepath.Join(rundir.Default.Shared, registry.FileName(ns, 0))}
	for i := range rundir.Candidates {
		n := "rdmabind-uid-0"
		if i > 0 {
			n += "." + strconv.Itoa(i)
		}
		names = append(names, filepath.Join(rundir.Default.Shared, n))
	}
	if _, err := os.Lstat(names[0]); err == nil {
		t.Logf("%s exists (a registry of an older rdmabind): not planting there", names[0])
		names = names[1:]
	}
	testutil.SquatAs(t, 65534, precious, names...)
	t.Setenv("RDMABIND_REGISTRY_DIR", "")
	var stdout, stderr bytes.Buffer
	if st := run([]string{"ls"}, &stdout, &stderr); st != 0 {
		t.Fatalf("rdmabind ls with %d names planted by uid 65534: status %d: %s", len(names), st, stderr.String())
	}
	if b, err := os.ReadFile(precious); err != nil || string(b) != "precious" {
		t.Fatalf("the file the planted links name: %q, %v", b, err)
	}
}
