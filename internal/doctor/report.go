package doctor

import (
	"net/netip"
	"slices"
)

// Result is the outcome of one check.
type Result struct {
	// Name names the check and what it looked at: "memlock",
	// "port mlx5_0/1", "gid 10.0.0.5".
	Name string `json:"name"`
	// OK is false when the check found something that keeps RDMA (or a
	// part of rdmabind) from working.
	OK bool `json:"ok"`
	// Detail says what was found, and for a GID why that one.
	Detail string `json:"detail"`
	// Fix says what to do, when OK is false (and sometimes when it is
	// true but something could be better).
	Fix string `json:"fix,omitempty"`
}

// Report is what Run found: the results of every check, in the order of
// Checks.
type Report struct {
	Checks []Result `json:"checks"`
}

// OK reports whether every check passed.
func (r *Report) OK() bool {
	return !slices.ContainsFunc(r.Checks, func(c Result) bool { return !c.OK })
}

// Failed returns the results that did not pass.
func (r *Report) Failed() []Result {
	return slices.DeleteFunc(slices.Clone(r.Checks), func(c Result) bool { return c.OK })
}

// Find returns the result named name, if there is one.
func (r *Report) Find(name string) (Result, bool) {
	i := slices.IndexFunc(r.Checks, func(c Result) bool { return c.Name == name })
	if i < 0 {
		return Result{}, false
	}
	return r.Checks[i], true
}

// Check is one check: its name, and the function that looks at the facts
// and returns one result or more (one per port, one per address).
type Check struct {
	Name string
	Run  func(e *Env) []Result
}

// Env is what a check sees: the facts, the topology read from them once,
// and the address asked about, if any.
type Env struct {
	Facts *Facts
	// Addr is the address the user asked about; the zero Addr means every
	// address of this namespace's interfaces.
	Addr netip.Addr
	// topo is the topology below Facts.Root; topoErr its error.
	topo    *topology
	topoErr error
}

// Run runs every check of Checks on f and returns the report. addr, if
// valid, limits the GID check to that address.
func Run(f *Facts, addr netip.Addr) *Report {
	e := &Env{Facts: f, Addr: addr}
	e.topo, e.topoErr = readTopology(f)
	r := &Report{Checks: []Result{}}
	for _, c := range Checks {
		r.Checks = append(r.Checks, c.Run(e)...)
	}
	return r
}
