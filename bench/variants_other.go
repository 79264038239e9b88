//go:build !linux

package bench

import (
	"fmt"
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"
)

// errPlatform is the error of a run off Linux.
var errPlatform = fmt.Errorf("bench: %w (%w: the variants need Linux)", ErrNotSupported, unix.EOPNOTSUPP)

func phaseName(p int) string { return "phase" + strconv.Itoa(p) }

type env struct {
	addr  netip.Addr
	crowd int
}

func newEnv(netip.Addr) (*env, error) { return nil, errPlatform }

func (*env) close() {}

func (*env) prepare(Variant) (*sampler, error) { return nil, errPlatform }
