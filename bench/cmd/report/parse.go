package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// results holds the benchmarks of a run: the median value of each
// benchmark and unit, and the comment lines that describe the run.
type results struct {
	// values maps a benchmark name (without "Benchmark" and the
	// GOMAXPROCS suffix) to its units' medians; the unit "iterations" is
	// the iteration count.
	values map[string]map[string]float64
	// order is the benchmark names in the order they first appeared.
	order []string
	// notes maps the key of a "# key: value" line to its value.
	notes map[string]string
	// cpu is the "cpu:" line of go test's output.
	cpu string
}

// procSuffix is the "-N" GOMAXPROCS suffix go test adds to names.
var procSuffix = regexp.MustCompile(`-\d+$`)

// parse reads benchmark output. A benchmark line is a name starting with
// "Benchmark", an iteration count, then pairs of value and unit; a line
// that starts so but does not parse is an error naming it.
func parse(r io.Reader) (*results, error) {
	res := &results{values: map[string]map[string]float64{}, notes: map[string]string{}}
	runs := map[string]map[string][]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		switch {
		case strings.HasPrefix(text, "cpu:"):
			res.cpu = strings.TrimSpace(strings.TrimPrefix(text, "cpu:"))
		case strings.HasPrefix(text, "# "):
			if k, v, ok := strings.Cut(strings.TrimPrefix(text, "# "), ":"); ok {
				res.notes[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		case strings.HasPrefix(text, "Benchmark"):
			f := strings.Fields(text)
			if len(f) == 1 {
				continue // the name go test prints before a sub-benchmark's results
			}
			if len(f) < 4 || len(f)%2 != 0 {
				return nil, fmt.Errorf("line %d: malformed benchmark line %q", line, text)
			}
			iterations, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: iteration count %q: %v", line, f[1], err)
			}
			name := procSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
			if runs[name] == nil {
				runs[name] = map[string][]float64{}
				res.order = append(res.order, name)
			}
			runs[name]["iterations"] = append(runs[name]["iterations"], float64(iterations))
			for i := 2; i < len(f); i += 2 {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					return nil, fmt.Errorf("line %d: value %q: %v", line, f[i], err)
				}
				runs[name][f[i+1]] = append(runs[name][f[i+1]], v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for name, units := range runs {
		res.values[name] = map[string]float64{}
		for unit, vs := range units {
			res.values[name][unit] = median(vs)
		}
	}
	return res, nil
}

// median returns the median of vs (the mean of the middle two for an even
// count); vs is sorted in place. It is 0 for no values.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	slices.Sort(vs)
	m := len(vs) / 2
	if len(vs)%2 == 1 {
		return vs[m]
	}
	return (vs[m-1] + vs[m]) / 2
}

// get returns the value of name in unit and whether it was measured.
func (r *results) get(name, unit string) (float64, bool) {
	v, ok := r.values[name][unit]
	return v, ok
}

// group returns the sub-benchmarks of prefix ("Hedging" gives
// "Hedging/none", ...) as the part after the slash, in order of appearance.
func (r *results) group(prefix string) []string {
	var libs []string
	for _, n := range r.order {
		if lib, ok := strings.CutPrefix(n, prefix+"/"); ok {
			libs = append(libs, lib)
		}
	}
	return libs
}
