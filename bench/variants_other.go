//go:build !linux

package bench

import (
	"errors"
	"net/netip"
	"strconv"
)

func phaseName(p int) string { return "phase" + strconv.Itoa(p) }

type env struct{ addr netip.Addr }

func newEnv(netip.Addr) (*env, error) { return nil, errors.New("bench: only on Linux") }

func (*env) close() {}

func (*env) prepare(Variant) (*sampler, error) { return nil, errors.New("only on Linux") }
