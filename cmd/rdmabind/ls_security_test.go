package main

import (
	"bytes"
	"os"
	"path/filepath"
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
	precious := testutil.Precious(t, 0)
	names := rundir.Default.Fallbacks(0)
	if old := filepath.Join(rundir.Default.Shared, registry.FileName(ns, 0)); !exists(old) {
		names = append(names, old)
	} else {
		t.Logf("%s exists (a registry of an older rdmabind): not planting there", old)
	}
	testutil.SquatAs(t, 65534, precious, names...)
	t.Setenv("RDMABIND_REGISTRY_DIR", "")
	var stdout, stderr bytes.Buffer
	if st := run([]string{"ls"}, &stdout, &stderr); st != 0 {
		t.Fatalf("rdmabind ls with %d names planted by uid 65534: status %d: %s", len(names), st, stderr.String())
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
