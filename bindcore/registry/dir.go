package registry

import (
	"fmt"

	"github.com/rdmabind/rdmabind/internal/rundir"
)

// DefaultDir returns the directory of this user's registries, creating it:
// /run/rdmabind for root, /run/user/<uid>/rdmabind for another user with a
// runtime directory, else a directory of the user's in /dev/shm
// (rdmabind-uid-<uid>, or the first of its fallback names nobody else took),
// mode 0700 and checked through an fd (package internal/rundir). Every
// process of one user gets the same directory; no other user can create,
// replace or read it (docs/security.md).
//
// Errors wrap ErrPermission when no such directory could be trusted or
// made (the message says why), or the errno of a failing call.
func DefaultDir() (string, error) {
	d, err := rundir.Dir()
	if err != nil {
		return "", fmt.Errorf("registry: %w: %w", ErrPermission, err)
	}
	return d, nil
}
