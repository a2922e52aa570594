package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// sweepPoint is one benchmark of a sweep: the value of its dimension
// (keys=1000 gives 1000) and its full name.
type sweepPoint struct {
	x    float64
	name string
}

// sweep returns the benchmarks named prefix + "/" + key + "=N", N a
// number, in ascending order of N.
func sweep(r *results, prefix, key string) []sweepPoint {
	var ps []sweepPoint
	for _, n := range r.order {
		rest, ok := strings.CutPrefix(n, prefix+"/"+key+"=")
		if !ok {
			continue
		}
		if x, err := strconv.ParseFloat(rest, 64); err == nil && finite(x) {
			ps = append(ps, sweepPoint{x, n})
		}
	}
	slices.SortStableFunc(ps, func(a, b sweepPoint) int { return cmpFloat(a.x, b.x) })
	return ps
}

// cmpFloat orders a and b.
func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// libSweeps returns, for the benchmarks named prefix + "/" + lib + "/" +
// key + "=N", the libraries in order of appearance and each one's sweep.
func libSweeps(r *results, prefix, key string) ([]string, map[string][]sweepPoint) {
	var libs []string
	sweeps := map[string][]sweepPoint{}
	for _, n := range r.order {
		rest, ok := strings.CutPrefix(n, prefix+"/")
		if !ok {
			continue
		}
		lib, dim, ok := strings.Cut(rest, "/"+key+"=")
		if !ok || strings.Contains(dim, "/") {
			continue
		}
		x, err := strconv.ParseFloat(dim, 64)
		if err != nil || !finite(x) {
			continue
		}
		if _, seen := sweeps[lib]; !seen {
			libs = append(libs, lib)
		}
		sweeps[lib] = append(sweeps[lib], sweepPoint{x, n})
	}
	for _, l := range libs {
		slices.SortStableFunc(sweeps[l], func(a, b sweepPoint) int { return cmpFloat(a.x, b.x) })
	}
	return libs, sweeps
}

// callerCounts returns the numbers of callers measured for lib in the
// callers scenario, ascending.
func callerCounts(sweeps map[string][]sweepPoint, lib string) []float64 {
	var xs []float64
	for _, p := range sweeps[lib] {
		xs = append(xs, p.x)
	}
	return xs
}

// callersName is the benchmark of lib at n callers.
func callersName(lib string, n float64) string {
	return "Callers/" + lib + "/callers=" + format0(n)
}

// format0 prints a count without decimals.
func format0(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// throughputOverhead is how much lower lib's throughput is than the bare
// client's at n callers, in percent of the bare figure (negative: higher).
func throughputOverhead(r *results, lib string, n float64) (float64, bool) {
	v, ok1 := r.get(callersName(lib, n), "calls/s")
	base, ok2 := r.get(callersName("none", n), "calls/s")
	if !ok1 || !ok2 || base <= 0 {
		return 0, false
	}
	return 100 * (base - v) / base, true
}

// writeCallers writes the tables of the callers scenario: throughput and
// p99 of every client at every concurrency, with the overhead against the
// bare client.
func writeCallers(w io.Writer, r *results, charts map[string]string) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("### Throughput and p99 as concurrent callers grow\n\n")
	p("One healthy server on 127.0.0.1, every client on a connection of its own; at 1, 8, 64 and 256 concurrent callers, each client's callers call in a closed loop for 2s in all, in 10 slices that the clients take in turns (in a rotating order), after an unrecorded warm-up slice. ")
	p("Overhead is how much lower a client's throughput is than the bare client's (\"none\"), in percent of it; \"none-control\" is a second bare client, so its overhead is the noise. ")
	p("With 2 cores shared by the server, the clients and the load generator, throughput levels off after a few callers and the latency grows with the queue.\n\n")
	libs, sweeps := libSweeps(r, "Callers", "callers")
	if len(libs) == 0 {
		p("_Not measured in this run._\n\n")
		return
	}
	counts := callerCounts(sweeps, "none")
	if len(counts) == 0 {
		counts = callerCounts(sweeps, libs[0])
	}
	header := func(what string) {
		p("| library |")
		for _, n := range counts {
			p(" %s, %s |", what, format0(n))
		}
		p("\n|---|%s\n", strings.Repeat("---:|", len(counts)))
	}
	cell := func(v float64, ok bool) string {
		if !ok {
			return " - |"
		}
		return " " + format(v) + " |"
	}
	label := func(lib string) string {
		if strings.HasPrefix(lib, "ours") {
			return "**" + lib + "**"
		}
		return lib
	}
	p("Calls per second (higher is better) and, in parentheses, overhead in %% of the bare client's throughput:\n\n")
	header("calls/s (overhead %)")
	for _, lib := range libs {
		p("| %s |", label(lib))
		for _, n := range counts {
			v, ok := r.get(callersName(lib, n), "calls/s")
			if !ok {
				p(" - |")
				continue
			}
			if o, ok := throughputOverhead(r, lib, n); ok && lib != "none" {
				p(" %s (%s) |", format(v), format(o))
			} else {
				p(" %s |", format(v))
			}
		}
		p("\n")
	}
	p("\n")
	embed(w, charts, "callers")
	p("p99 latency in µs (lower is better) and, in parentheses, the ratio to the bare client's p99:\n\n")
	header("p99 µs (x bare)")
	for _, lib := range libs {
		p("| %s |", label(lib))
		for _, n := range counts {
			v, ok := r.get(callersName(lib, n), "p99-ns")
			if !ok {
				p(" - |")
				continue
			}
			base, okb := r.get(callersName("none", n), "p99-ns")
			if okb && base > 0 && lib != "none" {
				p(" %s (%s) |", format(v/1000), format(v/base))
			} else {
				p("%s", cell(v/1000, true))
			}
		}
		p("\n")
	}
	p("\n")
	embed(w, charts, "callers-p99")
}

// callersCharts returns the charts of the callers scenario: throughput and
// p99 against the number of callers, one line per client.
func callersCharts(r *results) map[string]lineChart {
	libs, sweeps := libSweeps(r, "Callers", "callers")
	if len(libs) == 0 {
		return nil
	}
	line := func(unit string, scale float64) []series {
		var ss []series
		for _, lib := range libs {
			s := series{label: lib, ours: strings.HasPrefix(lib, "ours")}
			for _, pt := range sweeps[lib] {
				if v, ok := r.get(pt.name, unit); ok {
					s.points = append(s.points, point{pt.x, v * scale})
				}
			}
			ss = append(ss, s)
		}
		return ss
	}
	return map[string]lineChart{
		"callers":     {title: "Loopback throughput as concurrent callers grow", unit: "calls per second (higher is better); goal: ours within 2% of none", xLabel: "concurrent callers", logX: true, series: line("calls/s", 1)},
		"callers-p99": {title: "Loopback p99 latency as concurrent callers grow", unit: "p99 latency in µs (lower is better)", xLabel: "concurrent callers", logX: true, logY: true, series: line("p99-ns", 1.0/1000)},
	}
}

// writeKeys writes the table of the keys benchmarks: the per-call cost and
// the first call of a new key as the number of distinct keys grows, and
// the memory per key.
func writeKeys(w io.Writer, r *results, charts map[string]string) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("### Cost as distinct (target, method) keys grow\n\n")
	p("The full unary pipeline over the in-process invoker with calls spread over N distinct keys (`BenchmarkKeys`), the first call of a new key when N keys exist (`BenchmarkKeysFirstCall`), and the memory of the breaker, bulkhead and budget state per key (`BenchmarkKeysMemory`, B/key).\n\n")
	calls, first, mem := sweep(r, "Keys", "keys"), sweep(r, "KeysFirstCall", "keys"), sweep(r, "KeysMemory", "keys")
	if len(calls)+len(first)+len(mem) == 0 {
		p("_Not measured in this run._\n\n")
		return
	}
	var xs []float64
	for _, s := range [][]sweepPoint{calls, first, mem} {
		for _, pt := range s {
			if !slices.Contains(xs, pt.x) {
				xs = append(xs, pt.x)
			}
		}
	}
	slices.Sort(xs)
	base, okBase := r.get("Keys/keys=1", "ns/op")
	firstBase, okFirst := r.get("KeysFirstCall/keys=1000", "ns/op")
	p("| keys | ns/op per call | x 1 key | allocs/op | first call ns | first call x 10^3 keys | B/key |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	show := func(v float64, ok bool) string {
		if !ok {
			return "-"
		}
		return format(v)
	}
	for _, x := range xs {
		k := format0(x)
		ns, ok := r.get("Keys/keys="+k, "ns/op")
		allocs, okA := r.get("Keys/keys="+k, "allocs/op")
		f, okF := r.get("KeysFirstCall/keys="+k, "ns/op")
		b, okB := r.get("KeysMemory/keys="+k, "B/key")
		p("| %s | %s | %s | %s | %s | %s | %s |\n", k, show(ns, ok), show(ns/base, ok && okBase && base > 0), show(allocs, okA),
			show(f, okF), show(f/firstBase, okF && okFirst && firstBase > 0), show(b, okB))
	}
	p("\n")
	embed(w, charts, "keys")
}

// keysChart is the chart of the keys benchmarks: per-call and first-call
// ns against the number of keys, both axes logarithmic (the first call
// costs tens of µs, a call a few hundred ns).
func keysChart(r *results) (lineChart, bool) {
	var ss []series
	for _, s := range []struct{ label, prefix string }{{"per call", "Keys"}, {"first call of a new key", "KeysFirstCall"}} {
		sr := series{label: s.label, ours: s.prefix == "Keys"}
		for _, pt := range sweep(r, s.prefix, "keys") {
			if v, ok := r.get(pt.name, "ns/op"); ok {
				sr.points = append(sr.points, point{pt.x, v})
			}
		}
		if len(sr.points) > 0 {
			ss = append(ss, sr)
		}
	}
	if len(ss) == 0 {
		return lineChart{}, false
	}
	return lineChart{title: "Cost of a call as distinct keys grow", unit: "ns per call, log scale (lower is better); goals: per call within 1.5x of 1 key, first call at 10^5 within 2x of 10^3",
		xLabel: "distinct (target, method) keys", logX: true, logY: true, series: ss}, true
}

// parallelGroups are the RunParallel micro-benchmarks that `make bench`
// runs with -cpu 1,2,4,8, with the sub-benchmark that is ours.
var parallelGroups = []struct{ group, ours string }{
	{"BreakerAllowRecordParallel", "ours"},
	{"BulkheadTryAcquireReleaseParallel", "ours"},
	{"BulkheadAcquireReleaseParallel", "ours"},
	{"UnaryPipelineParallel", "ours-full"},
	{"RateLimitAllowParallel", "ours"},
}

// maxStep is the rise of ns/op from one -cpu value to the next beyond
// which a step of ours points at a global lock, when it is also more than
// maxStep times the median rise of the peers on the same step: the bound of the
// pipeline's parallel goal (1.3x its serial cost).
const maxStep = 1.3

// step returns the ratio of name's ns/op at GOMAXPROCS to to its ns/op at
// from.
func step(r *results, name string, from, to int) (float64, bool) {
	a, ok1 := r.getAt(name, from, "ns/op")
	b, ok2 := r.getAt(name, to, "ns/op")
	if !ok1 || !ok2 || a <= 0 {
		return 0, false
	}
	return b / a, true
}

// worstStep returns the largest ratio of name's ns/op at one -cpu value
// to its ns/op at the previous one, and the two values; ok is false when
// name ran with fewer than two.
func worstStep(r *results, name string) (worst float64, from, to int, ok bool) {
	ps := r.procs(name)
	for i := 1; i < len(ps); i++ {
		if s, measured := step(r, name, ps[i-1], ps[i]); measured && (!ok || s > worst) {
			worst, from, to, ok = s, ps[i-1], ps[i], true
		}
	}
	return worst, from, to, ok
}

// lockStep is a step of ours that points at a global lock: ours' ns/op
// rises by step from GOMAXPROCS from to to, more than maxStep and more
// than maxStep times the median rise of the peers on the same step,
// peerStep (of peers peers; with none, the first condition is enough).
type lockStep struct {
	group          string
	from, to       int
	step, peerStep float64
	peers          int
}

// lockSteps returns the steps of ours in group that point at a global
// lock. The bare invoker is no peer: it does nothing to contend on.
func lockSteps(r *results, group, ours string) (steps []lockStep, measured bool) {
	name := group + "/" + ours
	ps := r.procs(name)
	for i := 1; i < len(ps); i++ {
		s, ok := step(r, name, ps[i-1], ps[i])
		if !ok {
			continue
		}
		measured = true
		var peerSteps []float64
		for _, lib := range r.group(group) {
			if lib == ours || lib == "bare" || strings.HasPrefix(lib, "ours") {
				continue
			}
			if ps, ok := step(r, group+"/"+lib, ps[i-1], ps[i]); ok {
				peerSteps = append(peerSteps, ps)
			}
		}
		peer := median(peerSteps)
		if s > maxStep && (len(peerSteps) == 0 || s > maxStep*peer) {
			steps = append(steps, lockStep{group: group, from: ps[i-1], to: ps[i], step: s, peerStep: peer, peers: len(peerSteps)})
		}
	}
	return steps, measured
}

// writeCPUScaling writes, for each parallel micro-benchmark that ran with
// several -cpu values, the ns/op of every library at each and its worst
// step.
func writeCPUScaling(w io.Writer, r *results, nproc string) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("### RunParallel as GOMAXPROCS grows (-cpu 1,2,4,8)\n\n")
	p("The parallel micro-benchmarks again with `go test -cpu 1,2,4,8`: ns/op is wall time per operation over all goroutines, so a design that scales halves it from 1 to 2 cores and then holds it, while a global lock raises it with every step (the goroutines queue on it, and beyond the machine's %s cores a thread the kernel preempts while holding it stalls the others). ", nproc)
	p("Worst step is the largest rise of ns/op from one -cpu value to the next. Shared state that every operation writes (a rate limiter's one bucket, a bulkhead's count) costs more on two cores than on one even without a lock, and above the core count every library pays for the oversubscription, so the goal compares ours with the peers on the same step: a step of ours points at a global lock when it rises more than %sx and more than %sx the median of the peers' rises on the same step.\n\n", format(maxStep), format(maxStep))
	shown := false
	for _, pg := range parallelGroups {
		libs := r.group(pg.group)
		var procs []int
		for _, lib := range libs {
			for _, pr := range r.procs(pg.group + "/" + lib) {
				if !slices.Contains(procs, pr) {
					procs = append(procs, pr)
				}
			}
		}
		slices.Sort(procs)
		if len(procs) < 2 {
			continue
		}
		shown = true
		p("#### %s\n\n| library |", pg.group)
		for _, pr := range procs {
			p(" ns/op, -cpu %d |", pr)
		}
		p(" worst step |\n|---|%s---:|\n", strings.Repeat("---:|", len(procs)))
		for _, lib := range libs {
			name := pg.group + "/" + lib
			label := lib
			if lib == pg.ours {
				label = "**" + lib + "**"
			}
			p("| %s |", label)
			for _, pr := range procs {
				if v, ok := r.getAt(name, pr, "ns/op"); ok {
					p(" %s |", format(v))
				} else {
					p(" - |")
				}
			}
			if s, from, to, ok := worstStep(r, name); ok {
				p(" %sx (%d→%d) |\n", format(s), from, to)
			} else {
				p(" - |\n")
			}
		}
		p("\n")
	}
	if !shown {
		p("_Not measured in this run._\n\n")
	}
}

// cpuScalingGoal checks that none of our parallel micro-benchmarks has a
// step that points at a global lock (see lockSteps).
func cpuScalingGoal(r *results) goal {
	g := goal{text: fmt.Sprintf("6b. Parallel micro-benchmarks with -cpu 1,2,4,8: no step that points at a global lock (ours' ns/op rising more than %sx from one -cpu value to the next, and more than %sx the peers' median rise on that step)", format(maxStep), format(maxStep)), status: "not measured"}
	var flagged []string
	worst, worstName, from, to, measured := 0.0, "", 0, 0, 0
	for _, pg := range parallelGroups {
		steps, ok := lockSteps(r, pg.group, pg.ours)
		if !ok {
			continue
		}
		measured++
		if s, f, t, ok := worstStep(r, pg.group+"/"+pg.ours); ok && s > worst {
			worst, worstName, from, to = s, pg.group, f, t
		}
		for _, st := range steps {
			f := fmt.Sprintf("%s -cpu %d→%d: %sx", st.group, st.from, st.to, format(st.step))
			if st.peers > 0 {
				f += fmt.Sprintf(" against the peers' median %sx", format(st.peerStep))
			}
			flagged = append(flagged, f)
		}
	}
	if measured == 0 {
		return g
	}
	g.measured = fmt.Sprintf("%d benchmarks; ours' worst step %sx (%s, -cpu %d→%d)", measured, format(worst), worstName, from, to)
	if len(flagged) > 0 {
		g.measured += "; pointing at a lock: " + strings.Join(flagged, ", ")
	}
	g.status = verdict(len(flagged) == 0)
	return g
}

// pct prints a fraction as a percentage.
func pct(f float64) string { return format(100*f) + "%" }
