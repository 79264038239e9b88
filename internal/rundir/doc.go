// Package rundir finds the directory where rdmabind keeps one user's state
// that every process of that user on the host must find (the port registry
// of each network namespace, and with it the listen locks and the
// doorbell), in a place no other local user can create, replace or read.
//
// A name in a world-writable directory such as /dev/shm can be taken first
// by anybody: a symbolic link or a file planted under it makes the owner's
// open fail (a denial of service), or, if trusted, hands the owner's state
// to the planter. So, as DPDK and systemd do, the state lives in a directory
// only its user (or root) can create:
//
//   - root: /run/rdmabind (/run is root's);
//   - another user: /run/user/<uid>/rdmabind, in the runtime directory
//     logind makes for the user (the directory XDG_RUNTIME_DIR names; the
//     environment variable itself is not read, since two processes of one
//     user may not agree on it);
//   - the fallback, where that does not exist (no logind, a user without a
//     session, a container): a directory of the user's in /dev/shm,
//     rdmabind-uid-<uid> or, when another user took that name, the first of
//     rdmabind-uid-<uid>.1 ... .63 that is free.
//
// Every directory is opened component by component from "/" with
// O_NOFOLLOW and checked through its fd (fstat, never stat by path): each
// ancestor is owned by root or the user and is writable by others only if
// sticky (so nobody else can rename or remove what the user made in it),
// and the directory itself is the user's, made 0700 (one its owner made
// otherwise must at least not be writable by group or others; the files in
// it are 0600). A name another user planted (a link, a file, a directory of
// theirs) is never trusted; the fallback skips it. Once a fallback directory
// of the user exists it is used before the runtime directory, so that a
// process started with a session and one started without agree. Of several
// fallback directories of the user (a planted name removed later), the one
// made first (birth time) wins, which every process computes alike.
//
// What no name can prevent: another user who creates all 64 fallback names
// before the user's first use denies the fallback to that user (the error
// names their owners), as long as the user has no runtime directory;
// logind's /run/user/<uid>, or an explicit directory (the registry's
// Options.Dir, RDMABIND_REGISTRY_DIR), avoids the fallback. docs/security.md
// has the threat model.
package rundir
