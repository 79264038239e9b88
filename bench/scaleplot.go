package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// Scale is a set of scale curves: how a cost grows with what is live
// (sockets, claims, connections). Its points are measured by the commands
// each curve names and kept in a file (bench/scale.json); WriteSVG draws
// them (docs/scale.svg).
type Scale struct {
	Title  string       `json:"title"`
	Curves []ScaleCurve `json:"curves"`
}

// ScaleCurve is one chart: its series over a log x axis.
type ScaleCurve struct {
	Title string `json:"title"`
	// X names what grows ("live sockets"); Unit is the y values' unit:
	// "ns", "bytes" or "ratio".
	X    string `json:"x"`
	Unit string `json:"unit"`
	// Command is how the points were measured, and where.
	Command string        `json:"command"`
	Series  []ScaleSeries `json:"series"`
}

// ScaleSeries is one line of a curve.
type ScaleSeries struct {
	Name   string       `json:"name"`
	Points []ScalePoint `json:"points"`
}

// ScalePoint is one measurement: Y at X.
type ScalePoint struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// ReadScale reads a Scale from a JSON file and checks that every curve
// has a known unit and every series points at positive x.
func ReadScale(path string) (*Scale, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Scale
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	for _, c := range s.Curves {
		if c.Unit != "ns" && c.Unit != "bytes" && c.Unit != "ratio" {
			return nil, fmt.Errorf("bench: %s: curve %q: unit %q, want ns, bytes or ratio", path, c.Title, c.Unit)
		}
		for _, se := range c.Series {
			for _, p := range se.Points {
				if p.X <= 0 || p.Y < 0 {
					return nil, fmt.Errorf("bench: %s: curve %q, series %q: point (%v, %v): want x > 0, y >= 0", path, c.Title, se.Name, p.X, p.Y)
				}
			}
		}
	}
	return &s, nil
}

// formatValue labels a y value in the curve's unit.
func (c ScaleCurve) formatValue(v float64) string {
	switch c.Unit {
	case "ns":
		return FormatNS(int64(math.Round(v)))
	case "ratio":
		return fmt.Sprintf("%.2fx", v)
	}
	switch {
	case v >= 1<<20:
		return sig3(v/(1<<20)) + " MiB"
	case v >= 1<<10:
		return sig3(v/(1<<10)) + " KiB"
	}
	return fmt.Sprintf("%.0f B", v)
}

// WriteSVG draws the curves side by side: x on a log scale (one tick per
// decade), y linear from 0, each point labelled with its value.
func (s *Scale) WriteSVG(w io.Writer) error {
	const (
		panelW = 420
		plotW  = 320
		plotH  = 260
		left   = 70
		top    = 60
		height = top + plotH + 150
	)
	width := panelW*len(s.Curves) + 20
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`+"\n", width, height, width, height)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&b, `<text x="20" y="24" font-size="17" font-weight="bold">%s</text>`+"\n", esc(s.Title))
	for i, c := range s.Curves {
		drawScaleCurve(&b, c, i*panelW+left, top+20, plotW, plotH)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// drawScaleCurve draws one curve with its plot area at (x0, y0), w by h,
// and its legend and command below it.
func drawScaleCurve(b *strings.Builder, c ScaleCurve, x0, y0, w, h int) {
	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), 0.0
	for _, se := range c.Series {
		for _, p := range se.Points {
			xmin, xmax, ymax = math.Min(xmin, p.X), math.Max(xmax, p.X), math.Max(ymax, p.Y)
		}
	}
	if math.IsInf(xmin, 0) {
		xmin, xmax = 1, 10
	}
	lo, hi := math.Floor(math.Log10(xmin)), math.Ceil(math.Log10(xmax))
	if hi <= lo {
		hi = lo + 1
	}
	if ymax == 0 {
		ymax = 1
	}
	ymax *= 1.15
	px := func(x float64) float64 { return float64(x0) + (math.Log10(x)-lo)/(hi-lo)*float64(w) }
	py := func(y float64) float64 { return float64(y0+h) - y/ymax*float64(h) }

	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="14" font-weight="bold">%s</text>`+"\n", x0-50, y0-16, esc(c.Title))
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", x0, y0, w, h)
	for d := lo; d <= hi; d++ {
		x := px(math.Pow(10, d))
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x, y0, x, y0+h)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, y0+h+16, esc(formatCount(math.Pow(10, d))))
	}
	for i := 0; i <= 4; i++ {
		v := ymax / 1.15 * float64(i) / 4
		y := py(v)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>`+"\n", x0, y, x0+w, y)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, y+4, esc(c.formatValue(v)))
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">%s (log scale)</text>`+"\n", x0+w/2, y0+h+34, esc(c.X))
	for i, se := range c.Series {
		col := palette[i%len(palette)]
		var pts []string
		for _, p := range se.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p.X), py(p.Y)))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", col, strings.Join(pts, " "))
		for _, p := range se.Points {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px(p.X), py(p.Y), col)
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10" fill="%s" text-anchor="middle">%s</text>`+"\n", px(p.X), py(p.Y)-7, col, esc(c.formatValue(p.Y)))
		}
		ly := y0 + h + 54 + i*16
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", x0-50, ly-4, x0-30, ly-4, col)
		fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", x0-24, ly, esc(se.Name))
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="10" fill="#555">%s</text>`+"\n", x0-50, y0+h+58+16*len(c.Series), esc(c.Command))
}

// formatCount labels a power of ten: 1, 10, 100, 1k, 10k, 100k, 1M.
func formatCount(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}
