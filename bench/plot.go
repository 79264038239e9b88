package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The plot's palette (matplotlib's tab10): a variant and its floor share a
// colour, the floor dashed.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

type plotLine struct {
	label  string
	color  string
	dashed bool
	sorted []int64
}

// panel is one chart: a title and its lines.
type panel struct {
	title string
	lines []plotLine
}

// WriteSVG writes the latency CDFs of the report as an SVG image: one chart
// with every variant (solid) and its floor (dashed, same colour), and one
// with the phases of a Bind when the report has them. The x axis is the
// latency on a log scale, the y axis the fraction of samples at or below it
// (the percentile), on a scale that stretches the tail;
// the legend gives each line's p50 and, for a variant, its ratio to the
// floor.
func (r *Report) WriteSVG(w io.Writer) error {
	var main panel
	main.title = "Latency CDF: variants (solid) and their floors (dashed)"
	ci := 0
	for _, res := range r.Results {
		if len(res.Phases) > 0 || len(res.Samples) == 0 {
			continue
		}
		c := palette[ci%len(palette)]
		ci++
		label := fmt.Sprintf("%s  p50 %s p99 %s", res.Name, FormatNS(res.Summary.P50), FormatNS(res.Summary.P99))
		if res.Ratio != nil {
			label += fmt.Sprintf("  ×%.2f", res.Ratio.P50)
		}
		main.lines = append(main.lines, plotLine{label: label, color: c, sorted: sortedCopy(res.Samples)})
		if res.FloorSeries != nil && len(res.FloorSeries.Samples) > 0 {
			f := res.FloorSeries
			main.lines = append(main.lines, plotLine{
				label: fmt.Sprintf("  floor %s  p50 %s p99 %s", f.Name, FormatNS(f.Summary.P50), FormatNS(f.Summary.P99)),
				color: c, dashed: true, sorted: sortedCopy(f.Samples),
			})
		}
	}
	panels := []panel{main}
	for _, res := range r.Results {
		if len(res.Phases) == 0 {
			continue
		}
		ph := panel{title: "The phases of a Bind (TracePhases)"}
		for i, p := range res.Phases {
			ph.lines = append(ph.lines, plotLine{
				label: fmt.Sprintf("%s  p50 %s p99 %s", p.Name, FormatNS(p.Summary.P50), FormatNS(p.Summary.P99)),
				color: palette[(i+4)%len(palette)], sorted: sortedCopy(p.Samples),
			})
		}
		panels = append(panels, ph)
	}
	const (
		width   = 1100
		panelH  = 440
		top     = 70
		left    = 70
		plotW   = 640
		plotH   = 340
		legendX = left + plotW + 20
	)
	height := top + panelH*len(panels) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	short := ""
	if r.Short {
		short = " (short run)"
	}
	where := r.Machine.Kind
	if r.Machine.Hostname != "" {
		where = r.Machine.Hostname + " (" + where + ")"
	}
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="17" font-weight="bold">rdmabind bind latency on %s</text>`+"\n", left-50, esc(where))
	fmt.Fprintf(&b, `<text x="%d" y="44" font-size="12" fill="#333">%s</text>`+"\n", left-50, esc(r.Machine.String()))
	fmt.Fprintf(&b, `<text x="%d" y="60" font-size="12" fill="#333">%s, %s, address %s, %s per line after %d warm-up%s, interleaved</text>`+"\n",
		left-50, esc(r.Version), r.Date.Format("2006-01-02 15:04 UTC"), esc(r.Addr), perLine(r), r.Warmup, short)
	for i, p := range panels {
		y0 := top + i*panelH + 30
		drawPanel(&b, p, left, y0, plotW, plotH, legendX)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// decade labels a power of ten of nanoseconds: "100ns", "1µs", "10ms".
func decade(ns int64) string {
	units := []struct {
		div  int64
		unit string
	}{{1e9, "s"}, {1e6, "ms"}, {1e3, "µs"}, {1, "ns"}}
	for _, u := range units {
		if ns >= u.div {
			return fmt.Sprintf("%d%s", ns/u.div, u.unit)
		}
	}
	return fmt.Sprintf("%dns", ns)
}

// pct labels a fraction as a percentile: "p50", "p99.9"; 0 as "min".
func pct(f float64) string {
	if f == 0 {
		return "min"
	}
	return "p" + strconv.FormatFloat(f*100, 'f', -1, 64)
}

func esc(s string) string { return html.EscapeString(s) }

func sortedCopy(s []int64) []int64 {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// drawPanel draws one chart with its plot area at (x0, y0), w by h, and
// its legend at legendX.
func drawPanel(b *strings.Builder, p panel, x0, y0, w, h, legendX int) {
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="14" font-weight="bold">%s</text>`+"\n", x0, y0-10, esc(p.title))
	lo, hi := int64(math.MaxInt64), int64(1)
	for _, l := range p.lines {
		if len(l.sorted) == 0 {
			continue
		}
		lo = min(lo, max(l.sorted[0], 1))
		hi = max(hi, l.sorted[len(l.sorted)-1])
	}
	if lo > hi {
		lo, hi = 1, 10
	}
	dlo := math.Floor(math.Log10(float64(lo)))
	dhi := math.Ceil(math.Log10(float64(hi)))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	xpos := func(ns int64) float64 {
		v := math.Log10(math.Max(float64(ns), 1))
		return float64(x0) + (v-dlo)/(dhi-dlo)*float64(w)
	}
	// The y axis stretches the tail, as HdrHistogram's percentile plots do:
	// the height is -log10(1 - fraction), so 0.9, 0.99 and 0.999 are evenly
	// spaced; the top is the largest sample of the longest line.
	maxN := 1
	for _, l := range p.lines {
		maxN = max(maxN, len(l.sorted))
	}
	ytop := math.Max(math.Log10(float64(maxN)), 1)
	ypos := func(frac float64) float64 {
		t := ytop
		if frac < 1 {
			t = math.Min(-math.Log10(1-frac), ytop)
		}
		return float64(y0) + (1-t/ytop)*float64(h)
	}
	// Frame, grid, ticks.
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#000"/>`+"\n", x0, y0, w, h)
	for d := dlo; d <= dhi; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if math.Log10(v) > dhi+1e-9 {
				break
			}
			x := xpos(int64(v))
			if m == 1 {
				fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ccc"/>`+"\n", x, y0, x, y0+h)
				fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, y0+h+16, decade(int64(v)))
			} else {
				fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>`+"\n", x, y0, x, y0+h)
				fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="9" fill="#666">%g</text>`+"\n", x, y0+h+12, m)
			}
		}
	}
	for _, f := range []float64{0, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 0.99999} {
		if -math.Log10(1-f) > ytop-0.15 {
			break
		}
		y := ypos(f)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#bbb" stroke-dasharray="2,3"/>`+"\n", x0, y, x0+w, y)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, y+4, pct(f))
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="end">max</text>`+"\n", x0-6, y0+4)
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">latency per operation (log scale)</text>`+"\n", x0+w/2, y0+h+34)
	fmt.Fprintf(b, `<text transform="translate(%d,%d) rotate(-90)" text-anchor="middle">percentile (tail stretched: -log10(1-p))</text>`+"\n", x0-52, y0+h/2)
	// The lines: a step function through at most ~600 points each.
	for _, l := range p.lines {
		n := len(l.sorted)
		if n == 0 {
			continue
		}
		// Samples at evenly spaced heights of the stretched axis (so the
		// tail keeps its detail), each drawn as a step.
		var idx []int
		for k := 0; k <= 800; k++ {
			t := ytop * float64(k) / 800
			i := int(math.Ceil((1-math.Pow(10, -t))*float64(n))) - 1
			i = min(max(i, 0), n-1)
			if len(idx) == 0 || i > idx[len(idx)-1] {
				idx = append(idx, i)
			}
		}
		var pts strings.Builder
		prev := 0.0
		for k, i := range idx {
			x := xpos(l.sorted[i])
			if k == 0 {
				fmt.Fprintf(&pts, "M%.1f,%.1f", x, ypos(0))
			} else {
				fmt.Fprintf(&pts, " L%.1f,%.1f", x, ypos(prev))
			}
			prev = float64(i+1) / float64(n)
			fmt.Fprintf(&pts, " L%.1f,%.1f", x, ypos(prev))
		}
		dash := ""
		if l.dashed {
			dash = ` stroke-dasharray="6,4"`
		}
		fmt.Fprintf(b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.8"%s/>`+"\n", pts.String(), l.color, dash)
	}
	// Legend.
	for i, l := range p.lines {
		y := y0 + 8 + i*20
		dash := ""
		if l.dashed {
			dash = ` stroke-dasharray="6,4"`
		}
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2.5"%s/>`+"\n", legendX, y, legendX+28, y, l.color, dash)
		fmt.Fprintf(b, `<text x="%d" y="%d" xml:space="preserve">%s</text>`+"\n", legendX+34, y+4, esc(l.label))
	}
}

// perLine says how many samples a line of the plot pools: the samples of
// every repetition.
func perLine(r *Report) string {
	if r.Count > 1 {
		return fmt.Sprintf("%d samples (%d repetitions of %d)", r.Samples*r.Count, r.Count, r.Samples)
	}
	return fmt.Sprintf("%d samples", r.Samples)
}
