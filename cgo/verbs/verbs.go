package verbs

import (
	"errors"
	"fmt"
	"net/netip"
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

// WCStatus is a work completion's status (enum ibv_wc_status). Its String
// is the enum value's name, as in the libibverbs header.
type WCStatus uint32

const (
	WCSuccess          WCStatus = iota // IBV_WC_SUCCESS
	WCLocLenErr                        // IBV_WC_LOC_LEN_ERR
	WCLocQPOpErr                       // IBV_WC_LOC_QP_OP_ERR
	WCLocEECOpErr                      // IBV_WC_LOC_EEC_OP_ERR
	WCLocProtErr                       // IBV_WC_LOC_PROT_ERR
	WCFlushErr                         // IBV_WC_WR_FLUSH_ERR: the QP went to the error state
	WCMWBindErr                        // IBV_WC_MW_BIND_ERR
	WCBadRespErr                       // IBV_WC_BAD_RESP_ERR
	WCLocAccessErr                     // IBV_WC_LOC_ACCESS_ERR
	WCRemInvReqErr                     // IBV_WC_REM_INV_REQ_ERR
	WCRemAccessErr                     // IBV_WC_REM_ACCESS_ERR
	WCRemOpErr                         // IBV_WC_REM_OP_ERR
	WCRetryExcErr                      // IBV_WC_RETRY_EXC_ERR: transport retries exhausted
	WCRNRRetryExcErr                   // IBV_WC_RNR_RETRY_EXC_ERR: RNR retries exhausted
	WCLocRDDViolErr                    // IBV_WC_LOC_RDD_VIOL_ERR
	WCRemInvRDReqErr                   // IBV_WC_REM_INV_RD_REQ_ERR
	WCRemAbortErr                      // IBV_WC_REM_ABORT_ERR
	WCInvEECNErr                       // IBV_WC_INV_EECN_ERR
	WCInvEECStateErr                   // IBV_WC_INV_EEC_STATE_ERR
	WCFatalErr                         // IBV_WC_FATAL_ERR
	WCRespTimeoutErr                   // IBV_WC_RESP_TIMEOUT_ERR
	WCGeneralErr                       // IBV_WC_GENERAL_ERR
	WCTMErr                            // IBV_WC_TM_ERR
	WCTMRndvIncomplete                 // IBV_WC_TM_RNDV_INCOMPLETE
)

var wcStatusNames = [...]string{
	"IBV_WC_SUCCESS", "IBV_WC_LOC_LEN_ERR", "IBV_WC_LOC_QP_OP_ERR",
	"IBV_WC_LOC_EEC_OP_ERR", "IBV_WC_LOC_PROT_ERR", "IBV_WC_WR_FLUSH_ERR",
	"IBV_WC_MW_BIND_ERR", "IBV_WC_BAD_RESP_ERR", "IBV_WC_LOC_ACCESS_ERR",
	"IBV_WC_REM_INV_REQ_ERR", "IBV_WC_REM_ACCESS_ERR", "IBV_WC_REM_OP_ERR",
	"IBV_WC_RETRY_EXC_ERR", "IBV_WC_RNR_RETRY_EXC_ERR", "IBV_WC_LOC_RDD_VIOL_ERR",
	"IBV_WC_REM_INV_RD_REQ_ERR", "IBV_WC_REM_ABORT_ERR", "IBV_WC_INV_EECN_ERR",
	"IBV_WC_INV_EEC_STATE_ERR", "IBV_WC_FATAL_ERR", "IBV_WC_RESP_TIMEOUT_ERR",
	"IBV_WC_GENERAL_ERR", "IBV_WC_TM_ERR", "IBV_WC_TM_RNDV_INCOMPLETE",
}

func (s WCStatus) String() string {
	if int(s) < len(wcStatusNames) {
		return wcStatusNames[s]
	}
	return "WCStatus(" + strconv.FormatUint(uint64(s), 10) + ")"
}

// WCOpcode is what a work completion completed (enum ibv_wc_opcode). Every
// receive has the bit WCRecv set: Opcode&WCRecv != 0.
type WCOpcode uint32

const (
	WCSend        WCOpcode = 0   // IBV_WC_SEND
	WCRDMAWrite   WCOpcode = 1   // IBV_WC_RDMA_WRITE
	WCRDMARead    WCOpcode = 2   // IBV_WC_RDMA_READ
	WCCompSwap    WCOpcode = 3   // IBV_WC_COMP_SWAP
	WCFetchAdd    WCOpcode = 4   // IBV_WC_FETCH_ADD
	WCBindMW      WCOpcode = 5   // IBV_WC_BIND_MW
	WCLocalInv    WCOpcode = 6   // IBV_WC_LOCAL_INV
	WCRecv        WCOpcode = 128 // IBV_WC_RECV: a SEND received
	WCRecvRDMAImm WCOpcode = 129 // IBV_WC_RECV_RDMA_WITH_IMM: an RDMA WRITE with immediate received
)

func (o WCOpcode) String() string {
	switch o {
	case WCSend:
		return "IBV_WC_SEND"
	case WCRDMAWrite:
		return "IBV_WC_RDMA_WRITE"
	case WCRDMARead:
		return "IBV_WC_RDMA_READ"
	case WCCompSwap:
		return "IBV_WC_COMP_SWAP"
	case WCFetchAdd:
		return "IBV_WC_FETCH_ADD"
	case WCBindMW:
		return "IBV_WC_BIND_MW"
	case WCLocalInv:
		return "IBV_WC_LOCAL_INV"
	case WCRecv:
		return "IBV_WC_RECV"
	case WCRecvRDMAImm:
		return "IBV_WC_RECV_RDMA_WITH_IMM"
	}
	return "WCOpcode(" + strconv.FormatUint(uint64(o), 10) + ")"
}

// WCFlags are a work completion's flags (enum ibv_wc_flags).
type WCFlags uint32

const (
	WCGRH      WCFlags = 1 << 0 // IBV_WC_GRH: a UD receive starts with the GRH
	WCWithImm  WCFlags = 1 << 1 // IBV_WC_WITH_IMM: Imm is valid
	WCIPCsumOK WCFlags = 1 << 2 // IBV_WC_IP_CSUM_OK
	WCWithInv  WCFlags = 1 << 3 // IBV_WC_WITH_INV
)

// WC is a work completion, as Poll copies it out of ibv_wc.
type WC struct {
	ID      uint64   // wr_id
	Status  WCStatus // WCSuccess, WCFlushErr, ...
	Opcode  WCOpcode
	ByteLen uint32
	Imm     uint32 // host order; valid when Flags has WCWithImm
	Flags   WCFlags
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
	Status WCStatus
	ID     uint64
}

func (e *WCError) Error() string {
	return "work completion " + strconv.FormatUint(e.ID, 10) + ": " + e.Status.String()
}

// Is makes a flushed completion match unix.ECANCELED, a retry exhaustion
// unix.ETIMEDOUT, and anything else unix.EIO.
func (e *WCError) Is(target error) bool {
	switch e.Status {
	case WCFlushErr:
		return target == unix.ECANCELED
	case WCRetryExcErr, WCRNRRetryExcErr:
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
	RQPSN       uint32     // the peer's starting PSN
	DGID        netip.Addr // the peer's GID, in its 16-byte form (As16); used with a GRH only
	SGIDIndex   int        // -1: no GRH (InfiniBand, same subnet)
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

// ops is the C surface (verbs_cgo_unsafe.go, over the C wrappers of
// rbv.c); nil without cgo. Handles are C pointers (handle). Errors are bare
// unix.Errno values.
type ops interface {
	ctxOfID(id *rdmacm.ID) (ctx handle, name string, port int, err error)
	queryPort(ctx handle, port int) (PortAttr, error)
	queryGID(ctx handle, port, index int) (netip.Addr, error)
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
