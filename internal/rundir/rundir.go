package rundir

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
)

// ErrUntrusted: no directory could be trusted (or made): the error says
// which paths were refused and why.
var ErrUntrusted = errors.New("runtime directory not trusted")

// Candidates is how many fallback names Dir considers.
const Candidates = 64

// Layout is where Dir looks; Default is the host's. Tests point it at
// directories of their own.
type Layout struct {
	// Run is root's runtime directory (/run).
	Run string
	// UserRun holds the users' runtime directories, <UserRun>/<uid>
	// (/run/user).
	UserRun string
	// Shared is the sticky, world-writable directory of the fallback
	// (/dev/shm).
	Shared string
}

// Default is the host's layout.
var Default = Layout{Run: "/run", UserRun: "/run/user", Shared: "/dev/shm"}

// Name is the directory Dir makes in a runtime directory.
const Name = "rdmabind"

// Dir returns Default.Dir().
func Dir() (string, error) { return Default.Dir() }

// Fallbacks returns the paths of uid's fallback directories in l.Shared,
// in the order Dir tries them (Candidates of them).
func (l Layout) Fallbacks(uid uint32) []string {
	ps := make([]string, Candidates)
	for i := range ps {
		ps[i] = filepath.Join(l.Shared, fallbackName(uid, i))
	}
	return ps
}

// fallbackName is the i-th fallback name of uid: rdmabind-uid-<uid>, then
// rdmabind-uid-<uid>.<i>.
func fallbackName(uid uint32, i int) string {
	n := "rdmabind-uid-" + strconv.FormatUint(uint64(uid), 10)
	if i > 0 {
		n += "." + strconv.Itoa(i)
	}
	return n
}

// untrusted is why a directory was refused; it matches ErrUntrusted.
type untrusted struct{ why string }

func (e *untrusted) Error() string        { return e.why }
func (e *untrusted) Is(target error) bool { return target == ErrUntrusted }

func untrustedf(format string, args ...any) error {
	return &untrusted{fmt.Sprintf(format, args...)}
}
