//go:build !linux

package rundir

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Dir fails off Linux: rdmabind's shared state needs Linux.
func (l Layout) Dir() (string, error) {
	return "", fmt.Errorf("rundir: %w", unix.EOPNOTSUPP)
}
