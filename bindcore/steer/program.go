package steer

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// The return codes of an SK_REUSEPORT program (enum sk_action).
const (
	skDrop = 0 // refuse: the connection request is reset
	skPass = 1 // use the socket sk_select_reuseport chose
)

// Names of the kernel objects. The program name carries the layout version:
// Open refuses to join a pinned group whose program has another name.
const (
	progName   = "rdmabind_steer1" // at most 15 characters
	socksName  = "rdmabind_socks"
	activeName = "rdmabind_active"

	pinProg   = "prog"
	pinSocks  = "map"
	pinActive = "active"

	numSlots = 2
)

// socksSpec is the REUSEPORT_SOCKARRAY: key u32 slot, value the socket's fd
// on update (u64) and its cookie on lookup.
func socksSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{
		Name:       socksName,
		Type:       ebpf.ReusePortSockArray,
		KeySize:    4,
		ValueSize:  8,
		MaxEntries: numSlots,
	}
}

// activeSpec is a one-element array holding the designated slot (0 or 1).
func activeSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{
		Name:       activeName,
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: 1,
	}
}

// Stack slots of the program.
const (
	stackActiveKey = -4 // u32 0: the key of the active map
	stackSlot      = -8 // u32: the slot passed to sk_select_reuseport
)

// instructions returns the steering program for the given map fds:
//
//	slot = active[0] & 1 (0 when the lookup fails)
//	if sk_select_reuseport(ctx, socks, &slot, 0) == 0: return SK_PASS
//	slot ^= 1
//	if sk_select_reuseport(ctx, socks, &slot, 0) == 0: return SK_PASS
//	return SK_DROP
//
// It runs for every SYN to the group and, with the select-or-migrate attach
// type, for every request or child queued on a closing listener (the closing
// socket is already out of the map then). SK_DROP, never SK_PASS without a
// selection: SK_PASS would make the kernel pick a listener by hash.
func instructions(socks, active int) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // r6 = ctx (r1-r5 are clobbered by calls)
		asm.Mov.Imm(asm.R7, 0),      // r7 = slot, 0 unless active[0] says otherwise
		asm.StoreImm(asm.RFP, stackActiveKey, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, active),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackActiveKey),
		asm.FnMapLookupElem.Call(), // r0 = &active[0] or NULL
		asm.JEq.Imm(asm.R0, 0, "select"),
		asm.LoadMem(asm.R7, asm.R0, 0, asm.Word),
		asm.And.Imm(asm.R7, 1),

		asm.StoreMem(asm.RFP, stackSlot, asm.R7, asm.Word).WithSymbol("select"),
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

		asm.Mov.Imm(asm.R0, skDrop),
		asm.Return(),
		asm.Mov.Imm(asm.R0, skPass).WithSymbol("pass"),
		asm.Return(),
	}
}

// progSpec returns the program's spec for the given map fds.
func progSpec(socks, active int) *ebpf.ProgramSpec {
	return &ebpf.ProgramSpec{
		Name:         progName,
		Type:         ebpf.SkReuseport,
		AttachType:   ebpf.AttachSkReuseportSelectOrMigrate,
		Instructions: instructions(socks, active),
		// No GPL-only helper is called; the string only has to be one the
		// kernel accepts.
		License: "GPL",
	}
}
