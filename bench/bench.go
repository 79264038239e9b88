package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/rdmabind/rdmabind/rdma"
)

// Variant describes one measured operation and its floor.
type Variant struct {
	Name      string `json:"name"`
	What      string `json:"what"`
	Floor     string `json:"floor,omitempty"`      // "" for a variant that is a floor itself
	FloorWhat string `json:"floor_what,omitempty"` // what the floor does
	Needs     string `json:"needs,omitempty"`      // what the machine must have
	// Long marks a variant a short run skips unless it is named (its
	// set-up takes minutes in the guest: bind-crowded binds 10,000 sockets).
	Long bool `json:"long,omitempty"`
}

// The variants, in the order they run and print (listen last: its BPF
// program loads slow down what runs after them in a TCG guest).
var variants = []Variant{
	{Name: "kernel-bind", What: "socket(2) + bind(2) of a TCP socket, port 0 (the kernel's own bind; a floor itself)"},
	{Name: "rdma-bind", What: "rdma_create_id + rdma_set_option(REUSEADDR) + rdma_bind_addr, port 0 (librdmacm's bind; a floor itself)",
		Needs: "an RDMA device"},
	{Name: "bind", What: "rdmabind Socket.Bind of a raw sockaddr, port 0: codec, resolution, registry claim, shadow TCP socket, rdma_cm",
		Floor: "raw-bind", FloorWhat: "rdma-bind, then socket(2) + SO_REUSEPORT + bind(2) of a TCP socket to the port rdma_cm chose",
		Needs: "an RDMA device"},
	{Name: "bind-crowded", What: "the bind variant while 10,000 other sockets of the user (Config.Crowd, --crowd) are bound on other ports of the same address (a registry of 16,384 records, more for a larger crowd), with its phases",
		Floor: "raw-bind", FloorWhat: "rdma-bind, then socket(2) + SO_REUSEPORT + bind(2) of a TCP socket to the port rdma_cm chose",
		Needs: "an RDMA device", Long: true},
	{Name: "phases", What: "the phases of a Bind (Options.TracePhases), from a Binder of their own",
		Needs: "an RDMA device"},
	{Name: "claim", What: "registry Claim of an address and port (port index lookup, a slot: the one the previous sample's Release kept, so no fcntl; publish, ticket, check, commit)",
		Floor: "ofd-lock", FloorWhat: "one fcntl(F_OFD_SETLK) write lock on a byte of a tmpfs file: what keeps a claim live (a claim on a slot its Registry kept makes none)"},
	{Name: "switch", What: "steer Group.Designate, alternating between two listeners of a port (each the standby: its slot read, the state word swapped)",
		Floor: "map-update", FloorWhat: "one bpf(2) update of a REUSEPORT_SOCKARRAY slot with a listener",
		Needs: "root (CAP_BPF, CAP_NET_ADMIN) and SK_REUSEPORT programs"},
	{Name: "listen", What: "Socket.Listen of a bound socket, the first of its port: election lock, steering group (entries in the netns's maps), listen(2), attach, designate, rdma_listen",
		Floor: "raw-listen", FloorWhat: "rdma_listen of a raw-bound cm_id + listen(2) of its TCP socket",
		Needs: "an RDMA device; root for the steering (degraded without)"},
}

// Variants returns the variants Run knows, in their order.
func Variants() []Variant { return slices.Clone(variants) }

// Config says what Run measures.
type Config struct {
	// Samples and Warmup are per variant (and per floor); 0 means the
	// defaults, DefaultSamples and DefaultWarmup.
	Samples, Warmup int
	// Variants to run, by name; nil means all.
	Variants []string
	// Addr is the local address to bind; the zero value means the first
	// IPv4 address an RDMA device serves, or 127.0.0.1 without one.
	Addr netip.Addr
	// Short marks a short run (it is recorded in the Report).
	Short bool
	// Crowd is how many sockets bind-crowded keeps bound while it
	// measures; 0 means DefaultCrowd.
	Crowd int
	// Count is how many times the whole run is repeated, each repetition
	// preparing every variant afresh, warming it up and taking its
	// samples (as `go test -count`); 0 means 1. The Report keeps every
	// sample, and each repetition's distribution (Result.Runs), which
	// WriteBenchstat writes as one line per repetition.
	Count int
	// Progress, if set, is called after each round with the samples taken
	// and the total.
	Progress func(done, total int)
}

// Defaults of Config.
const (
	DefaultSamples = 1000
	DefaultWarmup  = 50
	ShortSamples   = 200
	ShortWarmup    = 20
	DefaultCrowd   = 10000
)

// Summary is a latency distribution, in nanoseconds.
type Summary struct {
	N    int     `json:"n"`
	Min  int64   `json:"min_ns"`
	Mean float64 `json:"mean_ns"`
	P50  int64   `json:"p50_ns"`
	P90  int64   `json:"p90_ns"`
	P99  int64   `json:"p99_ns"`
	P999 int64   `json:"p99_9_ns"`
	Max  int64   `json:"max_ns"`
}

// Summarize returns the distribution of ns (nearest-rank percentiles).
func Summarize(ns []int64) Summary {
	if len(ns) == 0 {
		return Summary{}
	}
	s := slices.Clone(ns)
	slices.Sort(s)
	var sum float64
	for _, v := range s {
		sum += float64(v)
	}
	return Summary{
		N: len(s), Min: s[0], Mean: sum / float64(len(s)),
		P50: quantile(s, 0.50), P90: quantile(s, 0.90), P99: quantile(s, 0.99), P999: quantile(s, 0.999),
		Max: s[len(s)-1],
	}
}

// quantile is the nearest-rank q-quantile of sorted s.
func quantile(sorted []int64, q float64) int64 {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Ratios are a variant's quantiles divided by its floor's.
type Ratios struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

// Series is one measured distribution: a variant, a floor or a phase.
type Series struct {
	Name    string  `json:"name"`
	Summary Summary `json:"summary"`
	// Runs are the distributions of each repetition (Config.Count).
	Runs    []Summary `json:"runs,omitempty"`
	Samples []int64   `json:"-"` // in the order taken; for plots
}

// Result is a variant's outcome: its samples, its floor's, their ratios,
// and for "phases" one series per phase of a Bind.
type Result struct {
	Variant
	Summary Summary `json:"summary"`
	// Runs are the distributions of each repetition (Config.Count).
	Runs        []Summary `json:"runs,omitempty"`
	Samples     []int64   `json:"-"`
	FloorSeries *Series   `json:"floor_series,omitempty"`
	Ratio       *Ratios   `json:"ratio,omitempty"`
	Phases      []Series  `json:"phases,omitempty"`
}

// Unavailable is a variant this machine cannot run, and why.
type Unavailable struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Report is the outcome of Run.
type Report struct {
	Machine     Machine       `json:"machine"`
	Version     string        `json:"version"`
	Commit      string        `json:"commit,omitempty"`
	Date        time.Time     `json:"date"`
	Addr        string        `json:"addr"`
	Samples     int           `json:"samples"` // per variant and repetition
	Warmup      int           `json:"warmup"`
	Count       int           `json:"count"` // repetitions (Config.Count)
	Short       bool          `json:"short,omitempty"`
	Crowd       int           `json:"crowd,omitempty"` // bind-crowded's live sockets, when it ran
	Interleaved bool          `json:"interleaved"`
	Seconds     float64       `json:"seconds"`
	Results     []Result      `json:"results"`
	Unavailable []Unavailable `json:"unavailable,omitempty"`
	// Counters are the deltas of the RDMA ports' counters over the run
	// (their non-zero counters, ports with none left out): retransmits,
	// out-of-sequence packets or congestion notifications here explain a
	// slow run. Nil on a host without RDMA devices.
	Counters []rdma.PortCounters `json:"counters,omitempty"`
	// CountersNote says why Counters are missing where devices exist.
	CountersNote string `json:"counters_note,omitempty"`
}

// Result returns the result of the named variant, or nil.
func (r *Report) Result(name string) *Result {
	for i := range r.Results {
		if r.Results[i].Name == name {
			return &r.Results[i]
		}
	}
	return nil
}

// Ratios returns the p50 ratio of every variant that has a floor.
func (r *Report) Ratios() map[string]float64 {
	m := map[string]float64{}
	for _, res := range r.Results {
		if res.Ratio != nil {
			m[res.Name] = res.Ratio.P50
		}
	}
	return m
}

// ErrUnknownVariant is returned by Run for a variant name it does not know.
var ErrUnknownVariant = errors.New("unknown variant")

// ErrNotSupported is wrapped, with unix.EOPNOTSUPP, by the error of Run on
// systems other than Linux: every variant binds in kernel TCP, rdma_cm or
// the registry, which need Linux.
var ErrNotSupported = errors.New("bench not supported")

// sampler is a prepared variant: each call of sample (and of floor) takes
// one timed sample and releases what it took, off the clock. phases, when
// set, is filled by sample with the phases of the Bind it made.
type sampler struct {
	v      Variant
	sample func() (time.Duration, error)
	floor  func() (time.Duration, error)
	phases func() []int64
	close  func()
}

// selectVariants checks names and returns the variants to run, in order.
func selectVariants(names []string, short bool) ([]Variant, error) {
	if len(names) == 0 {
		return slices.DeleteFunc(Variants(), func(v Variant) bool { return short && v.Long }), nil
	}
	want := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if !slices.ContainsFunc(variants, func(v Variant) bool { return v.Name == n }) {
			known := make([]string, len(variants))
			for i, v := range variants {
				known[i] = v.Name
			}
			return nil, fmt.Errorf("bench: %w %q (known: %s)", ErrUnknownVariant, n, strings.Join(known, ", "))
		}
		want[n] = true
	}
	var out []Variant
	for _, v := range variants {
		if want[v.Name] {
			out = append(out, v)
		}
	}
	return out, nil
}

// Run measures the variants of cfg on this machine and returns the Report.
// Variants the machine cannot run are in Report.Unavailable; Run fails only
// when it cannot measure at all, or when a sample of a variant that worked
// during preparation fails. The ports' counters are read before and after
// (Report.Counters); failing to read them is a note, not an error.
//
// Errors: ErrUnknownVariant (wrapped); a *wsa.Error WSAEADDRNOTAVAIL when
// cfg.Addr is not an address of this host; ctx's error; the error of a
// failing sample, or of preparing again (cfg.Count > 1) a variant an
// earlier repetition measured; off Linux, ErrNotSupported (and
// unix.EOPNOTSUPP).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	vs, err := selectVariants(cfg.Variants, cfg.Short)
	if err != nil {
		return nil, err
	}
	if cfg.Samples <= 0 {
		cfg.Samples = DefaultSamples
	}
	if cfg.Count <= 0 {
		cfg.Count = 1
	}
	if cfg.Warmup < 0 {
		cfg.Warmup = 0
	} else if cfg.Warmup == 0 {
		cfg.Warmup = DefaultWarmup
	}
	if cfg.Crowd <= 0 {
		cfg.Crowd = DefaultCrowd
	}
	start := time.Now()
	env, err := newEnv(cfg.Addr)
	if err != nil {
		return nil, err
	}
	env.crowd = cfg.Crowd
	defer env.close()
	rep := &Report{
		Machine: describeMachine(), Date: start.UTC().Truncate(time.Second), Addr: env.addr.String(),
		Samples: cfg.Samples, Warmup: cfg.Warmup, Count: cfg.Count, Short: cfg.Short, Interleaved: true,
	}
	if slices.ContainsFunc(vs, func(v Variant) bool { return v.Name == "bind-crowded" }) {
		rep.Crowd = cfg.Crowd
	}
	rep.Version, rep.Commit = Version()
	counters := startCounters()
	// One variant after the other, each prepared just before its samples
	// and closed after them: what one leaves behind must not weigh on
	// another (in the guest, every variant got slower once listen samples,
	// which load BPF programs, had run; docs/bench.md).
	// Within a variant, its samples and its floor's alternate. With
	// cfg.Count > 1 the whole sequence is repeated, so that a repetition
	// is a run of its own, as `go test -count` would make.
	total := (cfg.Warmup + cfg.Samples) * len(vs) * cfg.Count
	done := 0
	unavailable := map[string]bool{}
	for range cfg.Count {
		for _, v := range vs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if unavailable[v.Name] {
				done += cfg.Warmup + cfg.Samples
				continue
			}
			s, err := env.prepare(v)
			if err != nil {
				if rep.Result(v.Name) != nil {
					return nil, fmt.Errorf("bench: %s: prepare again: %w", v.Name, err)
				}
				unavailable[v.Name] = true
				rep.Unavailable = append(rep.Unavailable, Unavailable{Name: v.Name, Reason: err.Error()})
				done += cfg.Warmup + cfg.Samples
				continue
			}
			res, err := measure(ctx, s, cfg, func() {
				done++
				if cfg.Progress != nil {
					cfg.Progress(done, total)
				}
			})
			s.close()
			if err != nil {
				return nil, err
			}
			if cur := rep.Result(v.Name); cur != nil {
				cur.add(res)
			} else {
				rep.Results = append(rep.Results, res)
			}
		}
	}
	rep.Counters, rep.CountersNote = counters.stop()
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// measure takes cfg.Warmup samples of s and its floor, then cfg.Samples
// that count, the two strictly alternating.
func measure(ctx context.Context, s *sampler, cfg Config, tick func()) (Result, error) {
	var vs, fs []int64
	var phases [][]int64
	runtime.GC()
	for round := 0; round < cfg.Warmup+cfg.Samples; round++ {
		if round%64 == 0 {
			if err := ctx.Err(); err != nil {
				return Result{}, err
			}
		}
		// Strictly V F V F: every sample of the variant follows one of
		// the floor and the other way round. (V F F V, which alternated
		// who goes first, let half the floor's samples follow the floor:
		// in the TCG guest a short path run twice in a row is much faster
		// the second time, 170 µs against 226 µs for raw-bind, while a
		// Bind gains nothing, so the floor came out low and bind's ratio
		// 0.1 high; docs/bench.md.)
		var dv, df time.Duration
		var err error
		if dv, err = s.sample(); err == nil && s.floor != nil {
			df, err = s.floor()
		}
		if err != nil {
			return Result{}, fmt.Errorf("bench: %s: sample %d: %w", s.v.Name, round, err)
		}
		tick()
		if round < cfg.Warmup {
			continue
		}
		vs = append(vs, int64(dv))
		if s.floor != nil {
			fs = append(fs, int64(df))
		}
		if s.phases != nil {
			ph := s.phases()
			if phases == nil {
				phases = make([][]int64, len(ph))
			}
			for p, ns := range ph {
				phases[p] = append(phases[p], ns)
			}
		}
	}
	res := Result{Variant: s.v, Summary: Summarize(vs), Samples: vs}
	res.Runs = []Summary{res.Summary}
	if s.floor != nil {
		res.FloorSeries = &Series{Name: s.v.Floor, Summary: Summarize(fs), Samples: fs}
		res.FloorSeries.Runs = []Summary{res.FloorSeries.Summary}
		res.Ratio = ratios(res.Summary, res.FloorSeries.Summary)
	}
	for p, ns := range phases {
		sum := Summarize(ns)
		res.Phases = append(res.Phases, Series{Name: phaseName(p), Summary: sum, Runs: []Summary{sum}, Samples: ns})
	}
	return res, nil
}

// add merges the result of another repetition of the same variant into r:
// the samples are joined, the distributions and ratios computed over all of
// them, the repetitions' own distributions kept in Runs.
func (r *Result) add(o Result) {
	r.Runs = append(runsOf(r.Summary, r.Runs), runsOf(o.Summary, o.Runs)...)
	r.Samples = append(r.Samples, o.Samples...)
	r.Summary = Summarize(r.Samples)
	if r.FloorSeries != nil && o.FloorSeries != nil {
		r.FloorSeries.add(o.FloorSeries)
		r.Ratio = ratios(r.Summary, r.FloorSeries.Summary)
	}
	for i := range r.Phases {
		if i < len(o.Phases) {
			r.Phases[i].add(&o.Phases[i])
		}
	}
}

func (s *Series) add(o *Series) {
	s.Runs = append(runsOf(s.Summary, s.Runs), runsOf(o.Summary, o.Runs)...)
	s.Samples = append(s.Samples, o.Samples...)
	s.Summary = Summarize(s.Samples)
}

// RunRatios returns the p50 ratio of each repetition (nil without a
// floor).
func (r *Result) RunRatios() []float64 {
	if r.FloorSeries == nil {
		return nil
	}
	runs, floor := runsOf(r.Summary, r.Runs), runsOf(r.FloorSeries.Summary, r.FloorSeries.Runs)
	if len(runs) != len(floor) {
		return nil
	}
	out := make([]float64, len(runs))
	for i := range runs {
		out[i] = ratios(runs[i], floor[i]).P50
	}
	return out
}

// runsOf returns runs, or for a series without them (one made by hand, or
// read from an older report) its whole distribution as the one run.
func runsOf(whole Summary, runs []Summary) []Summary {
	if len(runs) == 0 && whole.N > 0 {
		return []Summary{whole}
	}
	return runs
}

func ratios(v, f Summary) *Ratios {
	div := func(a, b int64) float64 {
		if b <= 0 {
			return 0
		}
		return float64(a) / float64(b)
	}
	return &Ratios{P50: div(v.P50, f.P50), P90: div(v.P90, f.P90), P99: div(v.P99, f.P99)}
}
