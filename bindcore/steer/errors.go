package steer

import (
	"errors"
	"fmt"
)

var (
	// ErrNotPermitted matches errors caused by missing privilege: loading the
	// program or creating its maps without CAP_BPF and CAP_NET_ADMIN, no
	// access to the pin directory (another uid's group), or mounting bpffs
	// without CAP_SYS_ADMIN. The error also matches the errno (unix.EPERM or
	// unix.EACCES).
	ErrNotPermitted = errors.New("listener steering not permitted")

	// ErrNotSupported matches errors caused by the kernel lacking a feature
	// steering needs (SK_REUSEPORT programs with the select-or-migrate attach
	// type, Linux 5.14; bpffs), or by a platform other than Linux.
	ErrNotSupported = errors.New("listener steering not supported")

	// ErrMPTCP is returned for an MPTCP socket: the kernel refuses reuseport
	// programs and REUSEPORT_SOCKARRAY entries for them. It also matches
	// unix.EOPNOTSUPP. Create listeners with IPPROTO_TCP (bindcore/shadow
	// does) or net.ListenConfig.SetMultipathTCP(false).
	ErrMPTCP = errors.New("socket is MPTCP, not TCP: reuseport eBPF does not support it")

	// ErrIncompatible is returned by Open when the pinned group at the key's
	// path is not one this package made (another layout version, or damaged)
	// and other processes still hold it open, so it cannot be replaced.
	ErrIncompatible = errors.New("pinned steering group is incompatible")

	// ErrClosed is returned by methods of a closed Group.
	ErrClosed = errors.New("steering group closed")
)

// Degraded reports whether err means steering cannot be had here (no BPF
// privilege, or no kernel support), as opposed to a failure: the caller
// should then run in the degraded mode (exclusivity by listening on the
// designated socket only; no zero-loss handover).
func Degraded(err error) bool {
	return errors.Is(err, ErrNotPermitted) || errors.Is(err, ErrNotSupported)
}

// opError wraps err with the operation and the group: "steer designate
// netns:[4026531840] 127.0.0.1:5000: ...".
func opError(op string, k Key, err error) error {
	return fmt.Errorf("steer %s %s: %w", op, k, err)
}

// with returns an error matching both sentinel and cause.
func with(sentinel, cause error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if msg != "" {
		return fmt.Errorf("%s: %w: %w", msg, sentinel, cause)
	}
	return fmt.Errorf("%w: %w", sentinel, cause)
}
