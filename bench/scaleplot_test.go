package bench

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"
)

var updateScale = flag.Bool("update-scale", false, "write docs/scale.svg from bench/scale.json")

// docs/scale.svg is bench/scale.json drawn: the plot in the docs shows the
// recorded points, no others (go test ./bench -run ScalePlot -update-scale
// draws it again after the points change). Each curve of issue 16 is there
// with its three points.
func TestScalePlotCurrent(t *testing.T) {
	s, err := ReadScale("scale.json")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]float64{
		"bind": {1, 100, 10000}, "claim": {1000, 10000, 100000}, "memory": {10, 100, 1000},
	}
	for key, xs := range want {
		found := false
		for _, c := range s.Curves {
			if !strings.HasPrefix(strings.ToLower(c.Title), key) {
				continue
			}
			found = true
			for _, se := range c.Series {
				for i, p := range se.Points {
					if i >= len(xs) || p.X != xs[i] {
						t.Errorf("curve %q, series %q: point %d at x=%v, want the x of %v", c.Title, se.Name, i, p.X, xs)
					}
				}
			}
		}
		if !found {
			t.Errorf("no %s curve in scale.json", key)
		}
	}
	var buf bytes.Buffer
	if err := s.WriteSVG(&buf); err != nil {
		t.Fatal(err)
	}
	const path = "../docs/scale.svg"
	if *updateScale {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(have, buf.Bytes()) {
		t.Fatalf("%s is not bench/scale.json drawn (%v): go test ./bench -run ScalePlot -update-scale", path, err)
	}
}

func TestReadScaleRejects(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unit": `{"curves":[{"title":"x","unit":"furlongs","series":[]}]}`,
		"x":    `{"curves":[{"title":"x","unit":"ns","series":[{"name":"a","points":[{"x":0,"y":1}]}]}]}`,
		"json": `{"curves":`,
	} {
		p := dir + "/" + name + ".json"
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := ReadScale(p); err == nil {
			t.Errorf("%s: ReadScale accepted %s", name, body)
		}
	}
}
