package rundir

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir returns the directory of the calling process's effective uid (see
// the package documentation for which), creating it (mode 0700) if needed.
// Every process of one user on the host gets the same one.
//
// Errors wrap ErrUntrusted when no candidate could be trusted or made (the
// message lists each refusal), or the errno of a failing call.
func (l Layout) Dir() (string, error) {
	uid := uint32(unix.Geteuid())
	if d, found, err := l.fallback(uid, false); err == nil && found {
		return d, nil
	}
	runtime := l.Run
	if uid != 0 {
		runtime = filepath.Join(l.UserRun, strconv.FormatUint(uint64(uid), 10))
	}
	d, rerr := private(runtime, Name, uid, true)
	if rerr == nil {
		return d, nil
	}
	d, found, ferr := l.fallback(uid, true)
	if ferr == nil && found {
		return d, nil
	}
	if ferr == nil {
		ferr = untrustedf("no fallback directory could be made")
	}
	return "", fmt.Errorf("rundir: uid %d: %w (runtime directory: %w)", uid, ferr, rerr)
}

// private returns parent/name, a directory of uid with mode 0700, making it
// if create is set and it does not exist. parent is walked from "/" by
// openTrusted.
func private(parent, name string, uid uint32, create bool) (string, error) {
	pfd, err := openTrusted(parent, uid)
	if err != nil {
		return "", err
	}
	defer unix.Close(pfd)
	path := filepath.Join(parent, name)
	if create {
		if err := unix.Mkdirat(pfd, name, 0o700); err != nil && err != unix.EEXIST {
			return "", fmt.Errorf("rundir: mkdir %s: %w", path, err)
		}
	}
	if _, err := ownDir(pfd, name, uid); err != nil {
		return "", fmt.Errorf("rundir: %s: %w", path, err)
	}
	return path, nil
}

// openTrusted opens the directory at the absolute path dir (O_PATH), one
// component at a time from "/" with O_NOFOLLOW, checking each through its
// fd (ancestorOK): a directory owned by root or uid, writable by group or
// others only if sticky.
func openTrusted(dir string, uid uint32) (int, error) {
	if !filepath.IsAbs(dir) {
		return -1, fmt.Errorf("rundir: %s: %w", dir, untrustedf("not an absolute path"))
	}
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("rundir: open /: %w", err)
	}
	at := "/"
	for _, c := range strings.Split(filepath.Clean(dir), "/") {
		if c != "" {
			next, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			unix.Close(fd)
			at = filepath.Join(at, c)
			if err == unix.ELOOP || err == unix.ENOTDIR {
				return -1, fmt.Errorf("rundir: %s: %w: %w", at, untrustedf("a symbolic link or not a directory"), err)
			}
			if err != nil {
				return -1, fmt.Errorf("rundir: %s: %w", at, err)
			}
			fd = next
		}
		// "/" (the first, empty, component), then each one opened.
		var st unix.Stat_t
		err := unix.Fstat(fd, &st)
		if err == nil {
			err = ancestorOK(&st, uid)
		}
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("rundir: %s: %w", at, err)
		}
	}
	return fd, nil
}

// ancestorOK is the rule for a directory on the way: owned by root or uid,
// and writable by group or others only when sticky (then nobody else can
// rename or remove an entry uid made in it).
func ancestorOK(st *unix.Stat_t, uid uint32) error {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return untrustedf("not a directory")
	}
	if st.Uid != 0 && st.Uid != uid {
		return untrustedf("owned by uid %d (want root or %d)", st.Uid, uid)
	}
	if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
		return untrustedf("mode %#o: writable by group or others and not sticky", st.Mode&0o7777)
	}
	return nil
}

// ownDir checks name under the directory pfd through an fd of its own: a
// directory (not a link) owned by uid that group and others cannot write.
// (Dir makes it 0700; one made 0755 by its owner, as the SoftRoCE guest's
// /run/rdmabind is, is trusted too: the files in it are 0600.)
// It returns its statx (the birth time, where the file system has one).
func ownDir(pfd int, name string, uid uint32) (unix.Statx_t, error) {
	var sx unix.Statx_t
	fd, err := unix.Openat(pfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ELOOP || err == unix.ENOTDIR {
			return sx, fmt.Errorf("%w: %w", untrustedf("a symbolic link or not a directory"), err)
		}
		return sx, err
	}
	defer unix.Close(fd)
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &sx); err != nil {
		return sx, err
	}
	if sx.Uid != uid {
		return sx, untrustedf("owned by uid %d, and this process runs as uid %d", sx.Uid, uid)
	}
	if sx.Mode&0o022 != 0 {
		return sx, untrustedf("mode %#o is writable by group or others (want 0700)", sx.Mode&0o7777)
	}
	return sx, nil
}

// fallback returns uid's fallback directory in l.Shared: of the candidate
// names that are directories of uid (checked by ownDir), the one made
// first. With none, and create set, it makes the first free name and looks
// again (a concurrent process may have made another: the first made wins
// for both). found is false when there is none and create is not set.
func (l Layout) fallback(uid uint32, create bool) (dir string, found bool, err error) {
	sfd, err := openTrusted(l.Shared, uid)
	if err != nil {
		return "", false, err
	}
	defer unix.Close(sfd)
	var refused []string
	for try := 0; try < 4; try++ {
		best, free := -1, -1
		var bestAt unix.StatxTimestamp
		refused = refused[:0]
		there, err := listed(sfd, uid)
		if err != nil {
			return "", false, fmt.Errorf("rundir: %s: %w", l.Shared, err)
		}
		for i := range Candidates {
			name := fallbackName(uid, i)
			var st unix.Stat_t
			if !there[i] {
				if free < 0 {
					free = i
				}
				continue
			}
			if err := unix.Fstatat(sfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				if err == unix.ENOENT && free < 0 {
					free = i
				}
				continue
			}
			if st.Uid != uid {
				refused = append(refused, fmt.Sprintf("%s: owned by uid %d", name, st.Uid))
				continue
			}
			sx, err := ownDir(sfd, name, uid)
			if err != nil {
				refused = append(refused, fmt.Sprintf("%s: %v", name, err))
				continue
			}
			if best < 0 || sx.Mask&unix.STATX_BTIME != 0 && before(sx.Btime, bestAt) {
				best, bestAt = i, sx.Btime
			}
		}
		if best >= 0 {
			return filepath.Join(l.Shared, fallbackName(uid, best)), true, nil
		}
		if !create {
			return "", false, nil
		}
		if free < 0 {
			break
		}
		if err := unix.Mkdirat(sfd, fallbackName(uid, free), 0o700); err != nil && err != unix.EEXIST {
			return "", false, fmt.Errorf("rundir: mkdir %s: %w", filepath.Join(l.Shared, fallbackName(uid, free)), err)
		}
	}
	if len(refused) > 3 {
		refused = append(refused[:3], fmt.Sprintf("and %d more", len(refused)-3))
	}
	return "", false, fmt.Errorf("rundir: %s: %w: every one of the %d fallback names of uid %d is taken (%s)", l.Shared, ErrUntrusted, Candidates, uid, strings.Join(refused, "; "))
}

// listed reads the directory dfd once and reports which of uid's fallback
// names it holds (one getdents pass instead of a stat of each name; a
// name made or removed meanwhile is caught by the mkdir or stat after).
func listed(dfd int, uid uint32) ([Candidates]bool, error) {
	var there [Candidates]bool
	fd, err := unix.Openat(dfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return there, err
	}
	f := os.NewFile(uintptr(fd), "shared")
	defer f.Close()
	prefix := fallbackName(uid, 0)
	for {
		names, err := f.Readdirnames(1024)
		for _, n := range names {
			if n == prefix {
				there[0] = true
			} else if rest, ok := strings.CutPrefix(n, prefix+"."); ok {
				if i, err := strconv.Atoi(rest); err == nil && i > 0 && i < Candidates && strconv.Itoa(i) == rest {
					there[i] = true
				}
			}
		}
		if err == io.EOF || len(names) == 0 {
			return there, nil
		}
		if err != nil {
			return there, err
		}
	}
}

// before reports whether a is earlier than b.
func before(a, b unix.StatxTimestamp) bool {
	return a.Sec < b.Sec || a.Sec == b.Sec && a.Nsec < b.Nsec
}
