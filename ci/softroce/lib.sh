# shellcheck shell=bash disable=SC2034
# Shared by ci/softroce/prepare, run and selftest (sourced, not executed).

# Debian packages the harness needs on the host. The guest runs the host's own
# binaries (the host's / is its root file system), so the RDMA user space the
# guest uses is the one installed here.
SOFTROCE_PACKAGES=(
	qemu-system-x86 busybox-static kmod cpio iproute2
	rdma-core ibverbs-utils rdmacm-utils perftest librdmacm-dev libibverbs-dev
)

# The cache of the guest kernel and initramfs: outside the repository, shared by
# every checkout on the machine.
SOFTROCE_CACHE=${RDMABIND_SOFTROCE_CACHE:-/var/cache/rdmabind/softroce}

# Modules the initramfs loads, in this order (their dependencies first, as
# modprobe --show-depends lists them): the virtio transports, 9p for the root
# file system, the virtio console for the command's output, and the RDMA stack.
# crc32_generic must be there before rdma_rxe: rxe asks the crypto API for
# "crc32" and without it `rdma link add` fails with ENOENT.
SOFTROCE_MODULES=(
	virtio_pci 9pnet_virtio 9p virtio_net virtio_console
	crc32_generic rdma_ucm rdma_rxe veth
)

softroce_say() { printf 'softroce: %s\n' "$*" >&2; }
softroce_die() {
	softroce_say "$*"
	exit 125
}

# softroce_series KVER: the kernel series of a kernel version (6.1.0-41-amd64
# and 6.12.57+deb12-amd64 give 6.1 and 6.12).
softroce_series() {
	local major=${1%%.*} rest=${1#*.}
	printf '%s.%s' "$major" "${rest%%[!0-9]*}"
}

# softroce_current SERIES: the file holding the prepared settings of a series
# (KVER, KERNEL, INITRD, MODROOT, MODPROBE, HASH), written by prepare, read by
# run.
softroce_current() {
	if [[ $1 == 6.1 ]]; then printf '%s/current' "$SOFTROCE_CACHE"; else printf '%s/current-%s' "$SOFTROCE_CACHE" "$1"; fi
}
