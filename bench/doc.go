// Package bench measures how long binding takes with rdmabind, as a
// distribution, next to the floor each operation is built on: what the same
// job costs with bare system calls and no layer around it. The CLI's
// `rdmabind bench` runs it; docs/bench.md says what every variant and floor
// is, how to run it on a host, in the SoftRoCE guest and on a cluster, and
// how the history and its check work.
//
// Run measures the variants (Variants lists them) sample by sample, each
// sample of a variant followed by one of its floor (V F V F ...), so that
// every sample of either follows one of the other and whatever else the
// machine does hits both alike. Every sample binds
// to port 0 (the kernel and rdma_cm choose a free port) or claims in a
// registry of its own, and releases what it took before the next one, off the
// clock: a run leaves no descriptor, registry record or steering group behind.
// Variants a machine cannot run (rdma_cm with no RDMA device, steering without
// root) are listed in the Report with the reason.
//
// Config.Count repeats the whole run, each repetition a run of its own, as
// `go test -count` would; a Report keeps each repetition's distributions. It
// also carries the RDMA ports' counter deltas over the run (package rdma's
// ReadCounters): retransmits or congestion on the ports explain a slow run.
//
// A Report is written as a table (WriteTable), as benchstat lines, one per
// repetition, with golang.org/x/perf/benchfmt (WriteBenchstat), as JSON
// (encoding/json), and plotted as latency CDFs (WriteSVG). A History keeps the summary of a release's runs; Check compares a
// Report's ratios (variant / floor, which travel between machines where
// absolute times do not) with it.
package bench
