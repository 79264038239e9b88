package bindcore

import "time"

// Phase is a step of a Bind, for the latency breakdown of bench/.
type Phase int

// The phases of a Bind, in order.
const (
	PhaseCodec    Phase = iota // parse the sockaddr
	PhaseResolve               // address to device, port and GID
	PhaseRegistry              // the registry claim
	PhaseShadow                // the kernel TCP reservation
	PhaseRDMACM                // rdma_create_id, rdma_set_option, rdma_bind_addr
	NumPhases
)

// PhaseNames names the phases, by Phase.
var PhaseNames = [NumPhases]string{"codec", "resolve", "registry", "shadow", "rdma_cm"}

// phaseTimer adds the time since its last mark to a phase. A zero
// phaseTimer that was not started (Options.TracePhases off) does nothing:
// reading the clock is not free everywhere (a guest without a vDSO clock
// pays a system call for each).
type phaseTimer struct {
	on    bool
	last  time.Time
	times [NumPhases]int64
}

func (t *phaseTimer) start(on bool) {
	if t.on = on; on {
		t.last = time.Now()
	}
}

func (t *phaseTimer) mark(p Phase) {
	if !t.on {
		return
	}
	now := time.Now()
	t.times[p] += int64(now.Sub(t.last))
	t.last = now
}

// BindPhases returns how long each phase of the socket's Bind took, in
// nanoseconds, indexed like PhaseNames; zeros for an unbound socket, and
// unless the Binder was opened with Options.TracePhases.
func (s *Socket) BindPhases() [NumPhases]int64 {
	if s.lock("phases") != nil {
		return [NumPhases]int64{}
	}
	defer s.mu.Unlock()
	if s.bound == nil {
		return [NumPhases]int64{}
	}
	return s.bound.times
}
