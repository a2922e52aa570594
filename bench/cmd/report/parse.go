package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// results holds the benchmarks of a run: the median value of each
// benchmark and unit, and the comment lines that describe the run.
type results struct {
	// values maps a benchmark name (without "Benchmark" and the
	// GOMAXPROCS suffix) to its units' medians at its main GOMAXPROCS
	// (see mainProcs); the unit "iterations" is the iteration count.
	values map[string]map[string]float64
	// byProcs maps a benchmark name to its units' medians at each
	// GOMAXPROCS it ran with (go test -cpu): the "-N" suffix of its lines,
	// 1 for lines without one.
	byProcs map[string]map[int]map[string]float64
	// order is the benchmark names in the order they first appeared.
	order []string
	// notes maps the key of a "# key: value" line to its value.
	notes map[string]string
	// cpu is the "cpu:" line of go test's output.
	cpu string
}

// procSuffix is the "-N" GOMAXPROCS suffix go test adds to names when
// GOMAXPROCS is not 1.
var procSuffix = regexp.MustCompile(`-(\d+)$`)

// maxProcs bounds the GOMAXPROCS a suffix may name; a larger number is
// part of the benchmark's name.
const maxProcs = 1 << 16

// splitProcs splits a benchmark name, without "Benchmark", into the name
// and the GOMAXPROCS of its "-N" suffix (1 without one).
func splitProcs(full string) (string, int) {
	m := procSuffix.FindStringSubmatchIndex(full)
	if m == nil {
		return full, 1
	}
	n, err := strconv.Atoi(full[m[2]:m[3]])
	if err != nil || n < 1 || n > maxProcs {
		return full, 1
	}
	return full[:m[0]], n
}

// mainProcs is the GOMAXPROCS of a benchmark's main figures: the one it
// ran with most often; on a tie, prefer if it is among them, else the
// first seen. `make bench` runs the parallel micro-benchmarks with -cpu
// 1,2,4,8 and the others once at the default GOMAXPROCS, the machine's
// core count, which the report, run right after on the same machine,
// passes as prefer.
func mainProcs(lines map[int]int, order []int, prefer int) int {
	best := order[0]
	for _, p := range order[1:] {
		if lines[p] > lines[best] || (lines[p] == lines[best] && p == prefer) {
			best = p
		}
	}
	return best
}

// parse reads benchmark output, with the GOMAXPROCS of this process as
// the preferred one of parseWith.
func parse(r io.Reader) (*results, error) { return parseWith(r, runtime.GOMAXPROCS(0)) }

// parseWith reads benchmark output. A benchmark line is a name starting
// with "Benchmark", an iteration count, then pairs of value and unit; a
// line that starts so but does not parse is an error naming it. A
// benchmark's main figures are at the GOMAXPROCS of mainProcs, with
// prefer.
func parseWith(r io.Reader, prefer int) (*results, error) {
	res := &results{values: map[string]map[string]float64{}, byProcs: map[string]map[int]map[string]float64{}, notes: map[string]string{}}
	runs := map[string]map[int]map[string][]float64{}
	lines := map[string]map[int]int{}
	procsOrder := map[string][]int{}
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
			name, procs := splitProcs(strings.TrimPrefix(f[0], "Benchmark"))
			if runs[name] == nil {
				runs[name] = map[int]map[string][]float64{}
				lines[name] = map[int]int{}
				res.order = append(res.order, name)
			}
			if runs[name][procs] == nil {
				runs[name][procs] = map[string][]float64{}
				procsOrder[name] = append(procsOrder[name], procs)
			}
			lines[name][procs]++
			run := runs[name][procs]
			run["iterations"] = append(run["iterations"], float64(iterations))
			for i := 2; i < len(f); i += 2 {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					return nil, fmt.Errorf("line %d: value %q: %v", line, f[i], err)
				}
				run[f[i+1]] = append(run[f[i+1]], v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for name, perProcs := range runs {
		res.byProcs[name] = map[int]map[string]float64{}
		for procs, units := range perProcs {
			res.byProcs[name][procs] = map[string]float64{}
			for unit, vs := range units {
				res.byProcs[name][procs][unit] = median(vs)
			}
		}
		res.values[name] = res.byProcs[name][mainProcs(lines[name], procsOrder[name], prefer)]
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

// procs returns the GOMAXPROCS values name ran with, in ascending order.
func (r *results) procs(name string) []int {
	var ps []int
	for p := range r.byProcs[name] {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// getAt returns the value of name in unit at GOMAXPROCS procs and whether
// it was measured.
func (r *results) getAt(name string, procs int, unit string) (float64, bool) {
	v, ok := r.byProcs[name][procs][unit]
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
