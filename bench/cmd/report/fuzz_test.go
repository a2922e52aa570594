package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// FuzzParse feeds parse arbitrary text: it never panics, and what it
// accepts is consistent: every benchmark it names has values, a name
// printed again with a GOMAXPROCS suffix parses back to itself, and a
// group lists the names it holds.
func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add("BenchmarkX-8 10 1.5 ns/op 0 allocs/op\n")
	f.Add("BenchmarkX 1 NaN ns/op\n# k: v\ncpu: c\n")
	f.Add("Benchmark\nBenchmarkA/b 1 1e309 x\n")
	f.Add(scaleSample)
	f.Add("BenchmarkA-4 1 2 ns/op\nBenchmarkA 1 1 ns/op\nBenchmarkA-99999999 1 1 ns/op\n")
	f.Fuzz(func(t *testing.T, in string) {
		r, err := parse(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, name := range r.order {
			if len(r.values[name]) == 0 {
				t.Errorf("%q: no values", name)
			}
			if len(r.procs(name)) == 0 {
				t.Errorf("%q: no GOMAXPROCS", name)
			}
			for _, p := range r.procs(name) {
				if p < 1 || p > maxProcs || len(r.byProcs[name][p]) == 0 {
					t.Errorf("%q: GOMAXPROCS %d with values %v", name, p, r.byProcs[name][p])
				}
			}
			again, err := parse(strings.NewReader("Benchmark" + name + "-2 1 1 x\n"))
			if err != nil || len(again.order) != 1 || again.order[0] != name {
				t.Errorf("%q does not round-trip with a GOMAXPROCS suffix: %v, %v", name, again, err)
			}
			if group, lib, ok := strings.Cut(name, "/"); ok {
				found := false
				for _, l := range r.group(group) {
					found = found || group+"/"+l == name
				}
				if !found {
					t.Errorf("group %q lacks %q", group, lib)
				}
			}
		}
	})
}

// FuzzLineChart draws line charts of arbitrary points on every scale: the
// SVG is well-formed and has no coordinate that is not a number.
func FuzzLineChart(f *testing.F) {
	f.Add(1.0, 100.0, 1000.0, 250.0, 100000.0, 1e9, true, true)
	f.Add(0.0, -1.0, math.NaN(), math.Inf(1), 5.0, 5.0, false, true)
	f.Add(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, true, false)
	f.Fuzz(func(t *testing.T, x1, y1, x2, y2, x3, y3 float64, logX, logY bool) {
		c := lineChart{title: "t", unit: "u", xLabel: "x", logX: logX, logY: logY,
			series: []series{{label: "ours", ours: true, points: []point{{x1, y1}, {x2, y2}}}, {label: "peer", points: []point{{x3, y3}}}}}
		var b bytes.Buffer
		if err := c.writeSVG(&b); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(b.String(), "NaN") || strings.Contains(b.String(), "Inf") {
			t.Errorf("coordinates not numbers:\n%s", b.String())
		}
		checkXML(t, b.Bytes())
	})
}
