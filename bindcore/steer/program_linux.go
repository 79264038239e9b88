package steer

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// The return codes of an SK_REUSEPORT program (enum sk_action).
const (
	skDrop = 0 // refuse: the connection request is reset
	skPass = 1 // use the socket sk_select_reuseport chose
)

// Names of the kernel objects, and of the per-netns directory holding their
// pins. The layout version is in the directory's and the program's names: a
// later layout pins elsewhere.
const (
	nsDirName  = "steer2"
	progName   = "rdmabind_steer2" // at most 15 characters
	socksName  = "rdmabind_socks"
	groupsName = "rdmabind_groups"
	stateName  = "rdmabind_state"

	pinProg   = "prog"
	pinSocks  = "socks"
	pinGroups = "groups"
	pinState  = "state"

	numSlots = 2
)

// socksSpec is the REUSEPORT_SOCKARRAY of every group of the netns: group
// index i has slots 2i and 2i+1. Key u32, value the socket's fd on update
// (u64) and its cookie on lookup.
func socksSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{
		Name:       socksName,
		Type:       ebpf.ReusePortSockArray,
		KeySize:    4,
		ValueSize:  8,
		MaxEntries: numSlots * MaxGroups,
	}
}

// groupsSpec maps a group's key as the program sees it (progKey) to its
// index.
func groupsSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{
		Name:       groupsName,
		Type:       ebpf.Hash,
		KeySize:    progKeySize,
		ValueSize:  4,
		MaxEntries: MaxGroups,
		Flags:      unix.BPF_F_NO_PREALLOC,
	}
}

// stateSpec is one u32 per group index (see stateWord), memory-mapped by
// every process of the netns: the program reads the designated slot there,
// and a designation switch is a compare-and-swap, no system call.
func stateSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{
		Name:       stateName,
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: MaxGroups,
		Flags:      unix.BPF_F_MMAPABLE,
	}
}

// progKey is the groups map's key: what the program builds from the
// listening socket (ctx->sk) of a connection request. 24 bytes:
//
//	addr    [16]byte  the bound address, IPv4 as ::ffff:a.b.c.d
//	port    u32       the bound port, host byte order
//	ifindex u32       the bound device of a link-local IPv6 address, else 0
type progKey [progKeySize]byte

const progKeySize = 24

// progKeyOf returns the program's key of k. The address and port are k's
// (IPv4-mapped and IPv4 alike, as ::ffff:a.b.c.d); a link-local IPv6
// address carries its zone as the interface index, since the kernel keeps
// such sockets apart by bound device.
func progKeyOf(k Key) (progKey, error) {
	var pk progKey
	a := k.Addr.Addr().Unmap()
	ifindex := uint32(0)
	if a.Is6() && a.IsLinkLocalUnicast() {
		z := a.Zone()
		if z == "" {
			return pk, fmt.Errorf("link-local address %s without a zone", a)
		}
		n, err := strconv.ParseUint(z, 10, 32)
		if err != nil {
			ifi, ierr := net.InterfaceByName(z)
			if ierr != nil {
				return pk, fmt.Errorf("zone %q: %v", z, ierr)
			}
			n = uint64(ifi.Index)
		}
		ifindex = uint32(n)
	} else if a.Zone() != "" {
		return pk, fmt.Errorf("zone %q on %s, which is not link-local", a.Zone(), a.WithZone(""))
	}
	b := netip.AddrFrom16(a.As16()).As16() // IPv4 as ::ffff:a.b.c.d
	copy(pk[:16], b[:])
	binary.NativeEndian.PutUint32(pk[16:], uint32(k.Addr.Port()))
	binary.NativeEndian.PutUint32(pk[20:], ifindex)
	return pk, nil
}

// Offsets in struct sk_reuseport_md and struct bpf_sock (uapi/linux/bpf.h,
// Linux 5.14 and later).
const (
	mdSK          = 40 // __bpf_md_ptr(struct bpf_sock *, sk): a listener of the group
	mdMigratingSK = 48 // __bpf_md_ptr(struct bpf_sock *, migrating_sk): NULL, or the request being moved

	bsBoundDevIf = 0
	bsFamily     = 4
	bsSrcIP4     = 24
	bsSrcIP6     = 28
	bsSrcPort    = 44 // host byte order
)

// Stack slots of the program.
const (
	stackKey   = -progKeySize // the progKey, 24 bytes
	stackIndex = -28          // u32: the group index, key of the state map
	stackSlot  = -32          // u32: the slot passed to sk_select_reuseport
)

// ne32 is the u32 whose bytes in memory are b (the program stores and
// compares address bytes as u32 words of the host's byte order).
func ne32(b ...byte) int32 { return int32(binary.NativeEndian.Uint32(b)) }

// instructions returns the steering program for the given map fds:
//
//	key = {ctx->sk's bound address (IPv4 as ::ffff:a.b.c.d),
//	       the port (migrating_sk's when set: a closed listener's may be 0),
//	       ctx->sk's bound device if the address is link-local IPv6, else 0}
//	index = groups[key], or return SK_DROP
//	slot = 2*index + (state[index] & 1)
//	if sk_select_reuseport(ctx, socks, &slot, 0) == 0: return SK_PASS
//	slot ^= 1
//	if sk_select_reuseport(ctx, socks, &slot, 0) == 0: return SK_PASS
//	return SK_DROP
//
// It runs for every SYN to a group it is attached to and, with the
// select-or-migrate attach type, for every request or child queued on a
// closing listener (the closing socket is already out of the map then).
// SK_DROP, never SK_PASS without a selection: SK_PASS would make the kernel
// pick a listener by hash.
func instructions(socks, groups, state int) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),                  // r6 = ctx (r1-r5 are clobbered by calls)
		asm.LoadMem(asm.R7, asm.R6, mdSK, asm.DWord), // r7 = ctx->sk
		asm.LoadMem(asm.R2, asm.R6, mdMigratingSK, asm.DWord),
		asm.LoadMem(asm.R3, asm.R7, bsSrcPort, asm.Word), // r3 = sk->src_port
		asm.JEq.Imm(asm.R2, 0, "port"),
		asm.LoadMem(asm.R3, asm.R2, bsSrcPort, asm.Word), // migrating_sk->src_port
		asm.StoreMem(asm.RFP, stackKey+16, asm.R3, asm.Word).WithSymbol("port"),
		asm.StoreImm(asm.RFP, stackKey+20, 0, asm.Word), // ifindex 0 unless link-local

		asm.LoadMem(asm.R3, asm.R7, bsFamily, asm.Word),
		asm.JEq.Imm(asm.R3, unix.AF_INET6, "inet6"),
		asm.StoreImm(asm.RFP, stackKey, 0, asm.Word), // ::ffff:a.b.c.d
		asm.StoreImm(asm.RFP, stackKey+4, 0, asm.Word),
		asm.StoreImm(asm.RFP, stackKey+8, int64(ne32(0, 0, 0xff, 0xff)), asm.Word),
		asm.LoadMem(asm.R3, asm.R7, bsSrcIP4, asm.Word),
		asm.StoreMem(asm.RFP, stackKey+12, asm.R3, asm.Word),
		asm.Ja.Label("lookup"),

		asm.LoadMem(asm.R3, asm.R7, bsSrcIP6, asm.Word).WithSymbol("inet6"),
		asm.StoreMem(asm.RFP, stackKey, asm.R3, asm.Word),
		asm.LoadMem(asm.R4, asm.R7, bsSrcIP6+4, asm.Word),
		asm.StoreMem(asm.RFP, stackKey+4, asm.R4, asm.Word),
		asm.LoadMem(asm.R4, asm.R7, bsSrcIP6+8, asm.Word),
		asm.StoreMem(asm.RFP, stackKey+8, asm.R4, asm.Word),
		asm.LoadMem(asm.R4, asm.R7, bsSrcIP6+12, asm.Word),
		asm.StoreMem(asm.RFP, stackKey+12, asm.R4, asm.Word),
		asm.And.Imm32(asm.R3, ne32(0xff, 0xc0, 0, 0)), // fe80::/10?
		asm.JNE.Imm32(asm.R3, ne32(0xfe, 0x80, 0, 0), "lookup"),
		asm.LoadMem(asm.R4, asm.R7, bsBoundDevIf, asm.Word),
		asm.StoreMem(asm.RFP, stackKey+20, asm.R4, asm.Word),

		asm.LoadMapPtr(asm.R1, groups).WithSymbol("lookup"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackKey),
		asm.FnMapLookupElem.Call(), // r0 = &groups[key] or NULL
		asm.JEq.Imm(asm.R0, 0, "drop"),
		asm.LoadMem(asm.R7, asm.R0, 0, asm.Word), // r7 = index
		asm.StoreMem(asm.RFP, stackIndex, asm.R7, asm.Word),
		asm.LoadMapPtr(asm.R1, state),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackIndex),
		asm.FnMapLookupElem.Call(), // r0 = &state[index] or NULL
		asm.Mov.Imm(asm.R8, 0),
		asm.JEq.Imm(asm.R0, 0, "select"),
		asm.LoadMem(asm.R8, asm.R0, 0, asm.Word),
		asm.And.Imm(asm.R8, 1), // the designated slot, 0 or 1
		asm.LSh.Imm(asm.R7, 1).WithSymbol("select"),
		asm.Or.Reg(asm.R7, asm.R8), // r7 = 2*index + designated slot

		asm.StoreMem(asm.RFP, stackSlot, asm.R7, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, socks),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stackSlot),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkSelectReuseport.Call(), // r0 = 0 or -errno
		asm.JEq.Imm(asm.R0, 0, "pass"),

		asm.Xor.Imm(asm.R7, 1), // the standby slot
		asm.StoreMem(asm.RFP, stackSlot, asm.R7, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, socks),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stackSlot),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkSelectReuseport.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),

		asm.Mov.Imm(asm.R0, skDrop).WithSymbol("drop"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, skPass).WithSymbol("pass"),
		asm.Return(),
	}
}

// progSpec returns the program's spec for the given map fds.
func progSpec(socks, groups, state int) *ebpf.ProgramSpec {
	return &ebpf.ProgramSpec{
		Name:         progName,
		Type:         ebpf.SkReuseport,
		AttachType:   ebpf.AttachSkReuseportSelectOrMigrate,
		Instructions: instructions(socks, groups, state),
		// No GPL-only helper is called; the string only has to be one the
		// kernel accepts.
		License: "GPL",
	}
}

// The state word of a group index, in the memory-mapped state map:
//
//	bit 0     the designated slot (the program reads only this bit)
//	bit 1     busy: a process holding the group's slot lock is changing slots
//	bit 2     the index is allocated to a group
//	bits 3-31 a generation, bumped by every change
//
// A designation switch to the socket already in the standby slot is a
// compare-and-swap of the word, without the slot lock: see Group.flip.
const (
	stSlot  = 1 << 0
	stBusy  = 1 << 1
	stInUse = 1 << 2
	stGen   = 1 << 3
)
