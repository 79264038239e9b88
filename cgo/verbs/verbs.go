package verbs

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/rdmabind/rdmabind/cgo/internal/cerrno"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
	"golang.org/x/sys/unix"
)

// ErrNotSupported is wrapped by the errors of the constructors when verbs
// cannot be used at all: built without cgo (the error also matches
// unix.EOPNOTSUPP).
var ErrNotSupported = errors.New("not supported")

// ErrClosed is wrapped by the errors of methods called after Close.
var ErrClosed = errors.New("use of closed verbs object")

var (
	errNoDevice = fmt.Errorf("the rdma_cm id has no device yet (resolve or bind it first): %w", unix.ENODEV)
	errPoll     = fmt.Errorf("ibv_poll_cq failed: %w", unix.EIO)
)

// Access is a set of memory-region or QP access flags (enum ibv_access_flags).
type Access int

const (
	AccessLocalWrite  Access = 1
	AccessRemoteWrite Access = 2
	AccessRemoteRead  Access = 4
)

// Opcode is a send work request's opcode (enum ibv_wr_opcode).
type Opcode int

const (
	OpWrite    Opcode = 0 // IBV_WR_RDMA_WRITE
	OpWriteImm Opcode = 1 // IBV_WR_RDMA_WRITE_WITH_IMM
	OpSend     Opcode = 2 // IBV_WR_SEND
	OpSendImm  Opcode = 3 // IBV_WR_SEND_WITH_IMM
)

// SendFlags are a send work request's flags (enum ibv_send_flags).
type SendFlags int

const (
	SendSignaled SendFlags = 2
	SendInline   SendFlags = 8
)

// WC status values and flags (enum ibv_wc_status, ibv_wc_flags, ibv_wc_opcode).
const (
	WCSuccess     = 0
	WCFlushErr    = 5
	WCWithImm     = 2
	WCRecv        = 128
	WCRecvRDMAImm = 129
)

// WC is a work completion, as Poll copies it out of ibv_wc.
type WC struct {
	ID      uint64 // wr_id
	Status  uint32 // enum ibv_wc_status: WCSuccess, WCFlushErr, ...
	Opcode  uint32 // enum ibv_wc_opcode
	ByteLen uint32
	Imm     uint32 // host order; valid when Flags has WCWithImm
	Flags   uint32 // enum ibv_wc_flags
	QPNum   uint32
}

// HasImm reports whether the completion carries immediate data.
func (w WC) HasImm() bool { return w.Flags&WCWithImm != 0 }

// Err gives the completion's status as an error: nil for success.
func (w WC) Err() error {
	if w.Status == WCSuccess {
		return nil
	}
	return &WCError{Status: w.Status, ID: w.ID}
}

// WCError is a failed work completion.
type WCError struct {
	Status uint32
	ID     uint64
}

var wcNames = map[uint32]string{
	1: "IBV_WC_LOC_LEN_ERR", 2: "IBV_WC_LOC_QP_OP_ERR", 4: "IBV_WC_LOC_PROT_ERR",
	5: "IBV_WC_WR_FLUSH_ERR", 9: "IBV_WC_REM_INV_REQ_ERR", 10: "IBV_WC_REM_ACCESS_ERR",
	11: "IBV_WC_REM_OP_ERR", 12: "IBV_WC_RETRY_EXC_ERR", 13: "IBV_WC_RNR_RETRY_EXC_ERR",
}

func (e *WCError) Error() string {
	n, ok := wcNames[e.Status]
	if !ok {
		n = "status " + strconv.Itoa(int(e.Status))
	}
	return "work completion " + strconv.FormatUint(e.ID, 10) + ": " + n
}

// Is makes a flushed completion match unix.ECANCELED, a retry exhaustion
// unix.ETIMEDOUT, and anything else unix.EIO.
func (e *WCError) Is(target error) bool {
	switch e.Status {
	case WCFlushErr:
		return target == unix.ECANCELED
	case 12, 13:
		return target == unix.ETIMEDOUT
	}
	return target == unix.EIO
}

// SendWR is one send work request with at most one scatter/gather entry.
type SendWR struct {
	ID         uint64
	Op         Opcode
	Flags      SendFlags
	Addr       uintptr // local address, in a registered region (Region.Addr)
	Len        uint32
	LKey       uint32
	Imm        uint32 // for OpSendImm, OpWriteImm (host order)
	RemoteAddr uint64 // for OpWrite, OpWriteImm
	RKey       uint32
}

// Caps are the queue sizes of a QP.
type Caps struct {
	SendDepth, RecvDepth int
	MaxInline            int // requested inline size; CreateQP reports what it got
}

// MTU is enum ibv_mtu: 1 = 256 bytes ... 5 = 4096.
type MTU int

// Bytes is the MTU in bytes.
func (m MTU) Bytes() int {
	if m < 1 || m > 5 {
		return 0
	}
	return 128 << m
}

// PortAttr is what QueryPort reports.
type PortAttr struct {
	ActiveMTU MTU
	State     int // enum ibv_port_state: 4 = ACTIVE
	LID       uint16
	Ethernet  bool // RoCE: addressed by GID only
}

// RTRAttr moves a QP to RTR (ready to receive) for a TCP-style rendezvous.
type RTRAttr struct {
	Port        int
	MTU         MTU
	DestQPN     uint32
	RQPSN       uint32 // the peer's starting PSN
	DGID        [16]byte
	SGIDIndex   int // -1: no GRH (InfiniBand, same subnet)
	DLID        uint16
	MinRNRTimer int // 1 = 0.01 ms ... 31 = 491 ms; 0 = 655 ms
}

// RTSAttr moves a QP to RTS (ready to send).
type RTSAttr struct {
	SQPSN      uint32 // our starting PSN
	Timeout    int    // 4.096 µs * 2^Timeout per transport retry
	RetryCount int    // 0-7
	RNRRetry   int    // 0-7, 7 = forever
}

// ops is the C surface (verbs_cgo_unsafe.go); nil without cgo. Handles
// are C pointers (handle). Errors are bare unix.Errno values.
type ops interface {
	ctxOfID(id *rdmacm.ID) (ctx handle, name string, port int, err error)
	openDevice(name string) (handle, error)
	queryPort(ctx handle, port int) (PortAttr, error)
	queryGID(ctx handle, port, index int) ([16]byte, error)
	allocPD(ctx handle) (handle, error)
	deallocPD(pd handle) error
	regMR(pd handle, buf []byte, access Access) (mr handle, lkey, rkey uint32, err error)
	deregMR(mr handle) error
	createCompChannel(ctx handle) (ch handle, fd int, err error)
	destroyCompChannel(ch handle) error
	createCQ(ctx handle, depth int, ch handle) (handle, error)
	destroyCQ(cq handle) error
	reqNotify(cq handle) error
	getCQEvent(ch handle) error
	poll(cq handle, out []WC) (int, error)
	pollSpin(cq handle, out []WC, ns int64) (int, error)
	pollArm(cq handle, out []WC) (int, error)
	// eventPoll reads and acknowledges one event of ch (EAGAIN when none)
	// and polls cq.
	eventPoll(ch, cq handle, out []WC) (int, error)
	createQP(pd, scq, rcq handle, c Caps) (qp handle, qpn uint32, inline int, err error)
	createQPOnID(id *rdmacm.ID, pd, scq, rcq handle, c Caps) (qp handle, qpn uint32, inline int, err error)
	destroyQP(qp handle, id *rdmacm.ID) error
	toInit(qp handle, port int, access Access) error
	toRTR(qp handle, a RTRAttr) error
	toRTS(qp handle, a RTSAttr) error
	toErr(qp handle) error
	postSend(qp handle, w SendWR) error
	postRecv(qp handle, id uint64, addr uintptr, length, lkey uint32) error
}

var impl ops

func have(op string) error {
	if impl == nil {
		return fmt.Errorf("%s: %w (%w: built without cgo, no libibverbs)", op, unix.EOPNOTSUPP, ErrNotSupported)
	}
	return nil
}

// errnoOr is cerrno.Of: a failed C call's errno, EIO when it set none.
func errnoOr(err error) error { return cerrno.Of(err) }
