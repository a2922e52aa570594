package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// column is one column of a table of a benchmark group: a unit of the
// results, or a ratio computed from them.
type column struct {
	header string
	value  func(r *results, name string) (float64, bool)
}

// unitCol is the column of a unit as measured.
func unitCol(header, unit string) column {
	return column{header, func(r *results, name string) (float64, bool) { return r.get(name, unit) }}
}

// ratioCol is value(name)/value(ref) in unit, or the inverse with invert.
func ratioCol(header, unit, ref string, invert bool) column {
	return column{header, func(r *results, name string) (float64, bool) {
		v, ok1 := r.get(name, unit)
		base, ok2 := r.get(ref, unit)
		if !ok1 || !ok2 {
			return 0, false
		}
		if invert {
			v, base = base, v
		}
		if base == 0 {
			return math.Inf(1), true
		}
		return v / base, true
	}}
}

// diffCol is value(name) - value(ref) in unit.
func diffCol(header, unit, ref string) column {
	return column{header, func(r *results, name string) (float64, bool) {
		v, ok1 := r.get(name, unit)
		base, ok2 := r.get(ref, unit)
		return v - base, ok1 && ok2
	}}
}

// table writes the group's libraries as rows with the columns given.
func table(w io.Writer, r *results, group string, cols []column) {
	libs := r.group(group)
	if len(libs) == 0 {
		fmt.Fprintf(w, "_Not measured in this run._\n\n")
		return
	}
	fmt.Fprintf(w, "| library |")
	for _, c := range cols {
		fmt.Fprintf(w, " %s |", c.header)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---:|", len(cols)))
	for _, lib := range libs {
		label := lib
		if strings.HasPrefix(lib, "ours") {
			label = "**" + lib + "**"
		}
		fmt.Fprintf(w, "| %s |", label)
		for _, c := range cols {
			if v, ok := c.value(r, group+"/"+lib); ok {
				fmt.Fprintf(w, " %s |", format(v))
			} else {
				fmt.Fprintf(w, " - |")
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

// goal is one goal of the benchmark issue and where the run stands.
type goal struct {
	text     string
	measured string
	// status is "met", "not met" or "not measured".
	status string
}

// verdict is the status for a condition that could be measured.
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// by says how far a measured figure, what, is from its bound: "; what X%
// beyond the bound", or "" when the bound holds. lower says the bound is
// a maximum.
func by(what string, v, bound float64, lower bool) string {
	if (lower && v <= bound) || (!lower && v >= bound) || bound == 0 {
		return ""
	}
	return fmt.Sprintf("; %s %s beyond the bound", what, pct(math.Abs(v-bound)/math.Abs(bound)))
}

// goals checks the goals BENCHMARKS.md states against r: the eight of
// speed under concurrency and at scale, then hedging, CPU shedding and
// throttling.
func goals(r *results) []goal {
	var gs []goal
	// 1. The full pipeline in RunParallel.
	{
		g := goal{text: "1. Full unary pipeline (retry, breaker, client bulkhead, budget) in RunParallel: at most 1.3x its own serial ns/op, at most 1/3 of failsafe-go's retry+breaker in RunParallel, 0 allocs/op beyond the invoker", status: "not measured"}
		par, ok1 := r.get("UnaryPipelineParallel/ours-full", "ns/op")
		ser, ok2 := r.get("UnaryPipeline/ours-full", "ns/op")
		fs, ok3 := r.get("UnaryPipelineParallel/failsafe-go-retry+breaker", "ns/op")
		allocs, ok4 := r.get("UnaryPipelineParallel/ours-full", "allocs/op")
		bare, ok5 := r.get("UnaryPipelineParallel/bare", "allocs/op")
		if ok1 && ok2 && ok3 && ok4 && ok5 && ser > 0 && fs > 0 {
			g.measured = fmt.Sprintf("%sx its serial ns/op (%s against %s), %sx failsafe-go retry+breaker, %s allocs/op beyond the invoker",
				format(par/ser), format(par), format(ser), format(par/fs), format(allocs-bare))
			g.measured += by("vs serial", par/ser, 1.3, true) + by("vs failsafe-go", par/fs, 1.0/3, true)
			g.status = verdict(par <= 1.3*ser && par <= fs/3 && allocs-bare <= 0)
		}
		gs = append(gs, g)
	}
	// 2. The breaker in RunParallel.
	{
		g := goal{text: "2. Breaker allow+record in RunParallel: at least 2x the throughput of failsafe-go, 0 allocs/op", status: "not measured"}
		ours, ok1 := r.get("BreakerAllowRecordParallel/ours", "ns/op")
		fs, ok2 := r.get("BreakerAllowRecordParallel/failsafe-go", "ns/op")
		allocs, ok3 := r.get("BreakerAllowRecordParallel/ours", "allocs/op")
		if ok1 && ok2 && ok3 && ours > 0 {
			g.measured = fmt.Sprintf("%sx failsafe-go's throughput (%s against %s ns/op), %s allocs/op", format(fs/ours), format(ours), format(fs), format(allocs))
			if sony, ok := r.get("BreakerAllowRecordParallel/sony-gobreaker", "ns/op"); ok {
				g.measured += fmt.Sprintf("; %sx sony/gobreaker's", format(sony/ours))
			}
			g.measured += by("vs failsafe-go", fs/ours, 2, false)
			g.status = verdict(fs/ours >= 2 && allocs == 0)
		}
		gs = append(gs, g)
	}
	// 3. Loopback overhead and allocations.
	{
		g := goal{text: "3. Loopback overhead of the full pipeline: at most 1.5% of the bare call's median (bare-vs-bare control in the same run), at most 1 allocation beyond bare", status: "not measured"}
		v, ok1 := r.get("LoopbackOverhead/ours-full", "overhead-%")
		allocs, ok2 := r.get("LoopbackUnary/ours-full", "allocs/op")
		bare, ok3 := r.get("LoopbackUnary/bare", "allocs/op")
		if ok1 && ok2 && ok3 {
			g.measured = fmt.Sprintf("%s%% of the bare call's median", format(v))
			if noise, ok := r.get("LoopbackOverhead/none-control", "overhead-%"); ok {
				g.measured += fmt.Sprintf(" (control: %s%%)", format(noise))
			}
			g.measured += fmt.Sprintf(", %s allocs/op beyond bare", format(allocs-bare))
			if v > 1.5 {
				g.measured += fmt.Sprintf("; %s points over the bound", format(v-1.5))
			}
			g.status = verdict(v <= 1.5 && allocs-bare <= 1)
		}
		gs = append(gs, g)
	}
	// 4. Amplification.
	{
		g := goal{text: "4. Total outage with the default budget: at most 1.2 attempts per call", status: "not measured"}
		if v, ok := r.get("Amplification/ours", "attempts/call"); ok {
			g.measured = fmt.Sprintf("%s attempts per call", format(v)) + by("attempts", v, 1.2, true)
			g.status = verdict(v <= 1.2)
		}
		gs = append(gs, g)
	}
	gs = append(gs, keysGoal(r), callersGoal(r), cpuScalingGoal(r), streamsGoal(r), telemetryGoal(r))
	{
		g := goal{text: "Hedging: at least 5x lower p99 than no hedging on the heavy-tail server, at most 10% extra load", status: "not measured"}
		none, ok1 := r.get("Hedging/none", "p99-ms")
		ours, ok2 := r.get("Hedging/ours-p95", "p99-ms")
		extra, ok3 := r.get("Hedging/ours-p95", "extra-load-%")
		if ok1 && ok2 && ok3 {
			g.measured = fmt.Sprintf("p99 %sx lower than no hedging, %s%% extra load (adaptive p95 delay)", format(none/ours), format(extra))
			g.status = verdict(none/ours >= 5 && extra <= 10)
		}
		gs = append(gs, g)
	}
	gs = append(gs, cpuSheddingGoal(r, "4x"), cpuSheddingGoal(r, "4x-sustained"), throttlingGoal(r))
	return gs
}

// keysGoal checks goal 5: per-call cost with 10^3 and 10^5 keys within
// 1.5x of 1 key, the first call of a new key at 10^5 keys within 2x of its
// cost at 10^3, and under 2 KB of state per key.
func keysGoal(r *results) goal {
	g := goal{text: "5. Scale in keys: per-call cost with 10^3 and 10^5 distinct keys within 1.5x of 1 key; first call of a new key at 10^5 keys within 2x of 10^3; under 2 KB of breaker, bulkhead and budget state per key", status: "not measured"}
	one, ok1 := r.get("Keys/keys=1", "ns/op")
	k3, ok2 := r.get("Keys/keys=1000", "ns/op")
	k5, ok3 := r.get("Keys/keys=100000", "ns/op")
	f3, ok4 := r.get("KeysFirstCall/keys=1000", "ns/op")
	f5, ok5 := r.get("KeysFirstCall/keys=100000", "ns/op")
	mem, ok6 := r.get("KeysMemory/keys=100000", "B/key")
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || one <= 0 || f3 <= 0 {
		return g
	}
	worst := max(k3, k5) / one
	g.measured = fmt.Sprintf("per call %sx (10^3) and %sx (10^5) the 1-key cost; first call %sx at 10^5 against 10^3 (%s against %s ns); %s B/key",
		format(k3/one), format(k5/one), format(f5/f3), format(f5), format(f3), format(mem))
	g.measured += by("per call", worst, 1.5, true) + by("first call", f5/f3, 2, true) + by("memory", mem, 2048, true)
	g.status = verdict(worst <= 1.5 && f5/f3 <= 2 && mem < 2048)
	return g
}

// callersGoal checks goal 6: our throughput within 2% of the bare client's
// at every concurrency of the callers scenario.
func callersGoal(r *results) goal {
	g := goal{text: "6. Scale in callers: loopback throughput of the full pipeline at 1, 8, 64 and 256 concurrent callers at most 2% below the bare client's at every concurrency (p99 shown)", status: "not measured"}
	_, sweeps := libSweeps(r, "Callers", "callers")
	counts := callerCounts(sweeps, "ours-full")
	if len(counts) == 0 {
		return g
	}
	worst, worstN, noise, parts := math.Inf(-1), 0.0, 0.0, []string{}
	for _, n := range counts {
		o, ok := throughputOverhead(r, "ours-full", n)
		if !ok {
			return g
		}
		part := fmt.Sprintf("%s: %s%%", format0(n), format(o))
		if control, ok := throughputOverhead(r, "none-control", n); ok {
			noise = math.Max(noise, math.Abs(control))
			part += fmt.Sprintf(" (control %s%%", format(control))
			p99, ok1 := r.get(callersName("ours-full", n), "p99-ns")
			base, ok2 := r.get(callersName("none", n), "p99-ns")
			if ok1 && ok2 && base > 0 {
				part += fmt.Sprintf(", p99 %sx", format(p99/base))
			}
			part += ")"
		}
		parts = append(parts, part)
		if o > worst {
			worst, worstN = o, n
		}
	}
	g.measured = "throughput overhead by callers: " + strings.Join(parts, "; ")
	if worst > 2 {
		g.measured += fmt.Sprintf("; worst %s points over the bound at %s callers", format(worst-2), format0(worstN))
	}
	if noise > 2 {
		g.measured += fmt.Sprintf("; the control differs from bare by up to %s%%, more than the bound: this run cannot resolve 2%%", format(noise))
	}
	g.status = verdict(worst <= 2)
	return g
}

// streamsGoal checks goal 7: server-stream and bidi throughput with our
// stream interceptor at most 1.05x the bare stream's ns per message.
func streamsGoal(r *results) goal {
	g := goal{text: "7. Streams: server-stream and bidi cost per message with our stream interceptor at most 1.05x bare (go-grpc-middleware's stream retry shown)", status: "not measured"}
	var parts []string
	met := true
	for _, kind := range []string{"StreamServer", "StreamBidi"} {
		ours, ok1 := r.get(kind+"/ours", "ns/op")
		bare, ok2 := r.get(kind+"/bare", "ns/op")
		if !ok1 || !ok2 || bare <= 0 {
			return g
		}
		part := fmt.Sprintf("%s %sx bare", kind, format(ours/bare))
		if mw, ok := r.get(kind+"/go-grpc-middleware-retry", "ns/op"); ok {
			part += fmt.Sprintf(" (go-grpc-middleware %sx)", format(mw/bare))
		}
		if ours > 1.05*bare {
			part += fmt.Sprintf(", %s beyond the bound", pct(ours/bare/1.05-1))
		}
		parts = append(parts, part)
		met = met && ours <= 1.05*bare
	}
	if ours, ok1 := r.get("StreamOpen/ours", "ns/op"); ok1 {
		if bare, ok2 := r.get("StreamOpen/bare", "ns/op"); ok2 && bare > 0 {
			parts = append(parts, fmt.Sprintf("opening a stream %sx bare", format(ours/bare)))
		}
	}
	g.measured = strings.Join(parts, "; ")
	g.status = verdict(met)
	return g
}

// telemetryGoal checks goal 8: the real OTel SDK with a 1% sampler costs
// at most 1.2x the no-op observer's.
func telemetryGoal(r *results) goal {
	g := goal{text: "8. Telemetry: the full pipeline with the real OTel SDK and a 1% sampler at most 1.2x its cost with the no-op observer", status: "not measured"}
	otel, ok1 := r.get("Telemetry/otel-1pct", "ns/op")
	noop, ok2 := r.get("Telemetry/noop", "ns/op")
	if !ok1 || !ok2 || noop <= 0 {
		return g
	}
	g.measured = fmt.Sprintf("%sx the no-op observer's ns/op (%s against %s)", format(otel/noop), format(otel), format(noop))
	if lo, ok := r.get("TelemetryLoopback/otel-1pct", "ns/op"); ok {
		if ln, ok := r.get("TelemetryLoopback/noop", "ns/op"); ok && ln > 0 {
			g.measured += fmt.Sprintf("; on loopback %sx", format(lo/ln))
		}
	}
	g.measured += by("otel-1pct", otel/noop, 1.2, true)
	g.status = verdict(otel <= 1.2*noop)
	return g
}

// ourCPUStrategies are our automatic protections in the CPU-shedding
// scenario, and cpuPeers the peers' shedders.
var (
	ourCPUStrategies = []string{"ours-adaptive-aimd", "ours-adaptive-gradient", "ours-cpu", "ours-cpu-min2"}
	cpuPeers         = []string{"go-zero-shedder", "aegis-bbr"}
)

// cpuSheddingGoal checks the goal of the CPU-shedding scenario at load: one
// of our automatic strategies keeps at least 90% of the capacity as
// goodput, at least each peer's, with an admitted p99 within twice the
// unloaded p99. It names the first strategy that meets the goal or, when
// none does, the one with the most goodput.
func cpuSheddingGoal(r *results, load string) goal {
	g := goal{text: "CPU-bound server at " + load + " capacity: one of our automatic strategies (AIMD, Gradient, CPU) keeps at least 90% of the capacity as goodput, at least each peer's (go-zero, aegis), with an admitted p99 within 2x the unloaded p99", status: "not measured"}
	group := "CPUShedding/" + load + "/"
	unloaded, ok := r.get("CPUCapacity/unprotected", "unloaded-p99-ms")
	if !ok || unloaded <= 0 {
		return g
	}
	peerBest, peers := 0.0, ""
	for _, p := range cpuPeers {
		v, ok := r.get(group+p, "goodput/capacity")
		if !ok {
			return g
		}
		peerBest = math.Max(peerBest, v)
		peers += fmt.Sprintf(", %s %s", p, format(v))
	}
	pick, pickGoodput, pickP99, met := "", -1.0, 0.0, false
	for _, o := range ourCPUStrategies {
		v, ok1 := r.get(group+o, "goodput/capacity")
		p99, ok2 := r.get(group+o, "admitted-p99-ms")
		if !ok1 || !ok2 {
			continue
		}
		if v >= 0.9 && v >= peerBest && p99 <= 2*unloaded {
			pick, pickGoodput, pickP99, met = o, v, p99, true
			break
		}
		if v > pickGoodput {
			pick, pickGoodput, pickP99 = o, v, p99
		}
	}
	if pick == "" {
		return g
	}
	g.measured = fmt.Sprintf("%s: goodput %s of capacity (peers%s), admitted p99 %sx the unloaded p99",
		pick, format(pickGoodput), strings.TrimPrefix(peers, ","), format(pickP99/unloaded))
	g.status = verdict(met)
	return g
}

// throttlePeers are the peers' client-side protections in the throttling
// scenario.
var throttlePeers = []string{"go-zero-breaker", "aegis-sre", "failsafe-go-throttler"}

// throttlingGoal checks the goal of the throttling scenario: with its
// defaults, our throttle's success rate is at least every peer's and the
// backend refuses fewer of its attempts than of any peer's.
func throttlingGoal(r *results) goal {
	g := goal{text: "Backend serving half the offered load: our throttle (defaults) has at least every peer's success rate (go-zero, aegis, failsafe-go) and sends the backend fewer attempts it refuses than any of them", status: "not measured"}
	ours := "Throttling/ours-throttle"
	success, ok1 := r.get(ours, "success-%")
	refused, ok2 := r.get(ours, "backend-refused/s")
	if !ok1 || !ok2 {
		return g
	}
	met := true
	peers := ""
	for _, p := range throttlePeers {
		ps, ok1 := r.get("Throttling/"+p, "success-%")
		pr, ok2 := r.get("Throttling/"+p, "backend-refused/s")
		if !ok1 || !ok2 {
			return g
		}
		met = met && success >= ps && refused < pr
		peers += fmt.Sprintf("; %s %s%%, %s/s", p, format(ps), format(pr))
	}
	g.measured = fmt.Sprintf("ours %s%% success, %s refused/s%s", format(success), format(refused), peers)
	if ks, ok := r.get("Throttling/ours-throttle-k1.5", "success-%"); ok {
		kr, _ := r.get("Throttling/ours-throttle-k1.5", "backend-refused/s")
		g.measured += fmt.Sprintf(" (ours with K 1.5: %s%%, %s/s)", format(ks), format(kr))
	}
	g.status = verdict(met)
	return g
}

// writeMarkdown writes BENCHMARKS.md: the machine, the goals, one table per
// benchmark group with its chart, the features table, the notes and how to
// reproduce.
func writeMarkdown(w io.Writer, r *results, m machine, notes string, charts map[string]string) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("# Benchmarks\n\n")
	p("Written by `make bench` (bench/cmd/report) from `bench/results/raw.txt`; do not edit by hand, run it again.\n")
	p("Every figure is set against a baseline measured in the same run, on the same machine, because the machine is\n")
	p("shared and noisy: absolute nanoseconds move by tens of percent from run to run, ratios much less.\n\n")
	p("## Machine\n\n| | |\n|---|---|\n")
	p("| CPU | %s |\n| cores (nproc) | %s |\n| Go | %s |\n| load average before the run | %s |\n| load average after the run | %s |\n| date | %s |\n\n",
		m.cpu, m.nproc, m.goVersion, orDash(r.notes["loadavg-start"]), orDash(r.notes["loadavg-end"]), orDash(r.notes["date"]))
	if iso := r.notes["cpu-isolation"]; iso != "" {
		p("The CPU-bound server of the CPU-shedding scenario ran with: %s.\n\n", iso)
	}
	p("## Goals\n\n| goal | measured | status |\n|---|---|---|\n")
	for _, g := range goals(r) {
		status := "**" + g.status + "**"
		p("| %s | %s | %s |\n", g.text, orDash(g.measured), status)
	}
	p("\n")

	p("## Micro-benchmarks\n\n")
	p("`go test -bench` in `bench/micro`, median of the runs. \"x ours\" is the library's ns/op divided by ours: above 1, ours is faster.\n\n")
	micro := []struct{ title, group, ref string }{
		{"Breaker allow+record, one goroutine", "BreakerAllowRecord", "BreakerAllowRecord/ours"},
		{"Breaker allow+record, RunParallel", "BreakerAllowRecordParallel", "BreakerAllowRecordParallel/ours"},
		{"Bulkhead try-acquire+release, one goroutine", "BulkheadTryAcquireRelease", "BulkheadTryAcquireRelease/ours"},
		{"Bulkhead try-acquire+release, RunParallel", "BulkheadTryAcquireReleaseParallel", "BulkheadTryAcquireReleaseParallel/ours"},
		{"Bulkhead acquire(ctx)+release, one goroutine", "BulkheadAcquireRelease", "BulkheadAcquireRelease/ours"},
		{"Bulkhead acquire(ctx)+release, RunParallel", "BulkheadAcquireReleaseParallel", "BulkheadAcquireReleaseParallel/ours"},
		{"Retry, first attempt succeeds", "RetrySuccess", "RetrySuccess/ours"},
		{"Unary client pipeline over an in-process invoker, one goroutine", "UnaryPipeline", "UnaryPipeline/ours-full"},
		{"Unary client pipeline over an in-process invoker, RunParallel", "UnaryPipelineParallel", "UnaryPipelineParallel/ours-full"},
		{"Rate limiter, a token granted, one goroutine", "RateLimitAllow", "RateLimitAllow/ours"},
		{"Rate limiter, a token granted, RunParallel", "RateLimitAllowParallel", "RateLimitAllowParallel/ours"},
		{"Rate limiter, a token refused, one goroutine", "RateLimitRefused", "RateLimitRefused/ours"},
		{"Rate limiter, a token refused, RunParallel", "RateLimitRefusedParallel", "RateLimitRefusedParallel/ours"},
	}
	for _, mc := range micro {
		p("### %s\n\n", mc.title)
		c := ratioCol("x ours", "ns/op", mc.ref, false)
		table(w, r, mc.group, []column{unitCol("ns/op", "ns/op"), unitCol("B/op", "B/op"), unitCol("allocs/op", "allocs/op"), c})
		if mc.group == "BreakerAllowRecordParallel" {
			embed(w, charts, "breaker")
		}
	}
	p("### Unary call on loopback TCP, one goroutine\n\n")
	p("The same interceptors on a real call to a testservice server on 127.0.0.1: allocations beyond bare are what each adds to gRPC's own. The sub-benchmarks run one after the other, so their ns/op differ by the machine's drift as much as by the interceptor; the interleaved overhead scenario below measures latency.\n\n")
	table(w, r, "LoopbackUnary", []column{unitCol("ns/op", "ns/op"), unitCol("B/op", "B/op"), unitCol("allocs/op", "allocs/op"),
		diffCol("allocs beyond bare", "allocs/op", "LoopbackUnary/bare")})
	writeCPUScaling(w, r, m.nproc)
	writeKeys(w, r, charts)
	p("### Streams on loopback TCP\n\n")
	p("Server-streaming (ns/op per message received, streams of many messages opened as needed), bidi (ns/op per request sent and echo received on one long-lived stream) and the opening of a stream of one message, through our stream interceptor (retry, breaker, bulkhead), go-grpc-middleware's stream retry, and none. \"x bare\" is the library's ns/op over the bare stream's: the goal is at most 1.05.\n\n")
	for _, st := range []struct{ title, group string }{
		{"Server stream, per message", "StreamServer"}, {"Bidi stream, per message", "StreamBidi"}, {"Opening a stream", "StreamOpen"},
	} {
		p("#### %s\n\n", st.title)
		table(w, r, st.group, []column{unitCol("ns/op", "ns/op"), unitCol("B/op", "B/op"), unitCol("allocs/op", "allocs/op"), ratioCol("x bare", "ns/op", st.group+"/bare", false)})
	}
	p("### Telemetry\n\n")
	p("The full pipeline with no observer (none), with the telemetry package on OTel's no-op providers (noop), and on the real OTel SDK (traces and metrics, a manual metric reader) sampling 1%% of root spans (otel-1pct) or all of them (otel-always); \"x noop\" is ns/op over noop's: the goal for otel-1pct is at most 1.2.\n\n")
	for _, t := range []struct{ title, group string }{
		{"Over the in-process invoker", "Telemetry"}, {"On a loopback unary call", "TelemetryLoopback"},
	} {
		p("#### %s\n\n", t.title)
		table(w, r, t.group, []column{unitCol("ns/op", "ns/op"), unitCol("B/op", "B/op"), unitCol("allocs/op", "allocs/op"), ratioCol("x noop", "ns/op", t.group+"/noop", false)})
	}

	p("## Loopback gRPC scenarios\n\n")
	p("`go run ./cmd/scenarios` in `bench`: real gRPC servers from `testservice` on 127.0.0.1, one fresh server and client per library; with `-count`, the median of the rounds.\n\n")
	p("### Overhead of the client interceptors\n\n")
	p("Serial calls, every client once per round in a rotating order; median and p90 latency. Overhead is the client's median over the bare call's (\"none\"), in percent; \"none-control\" is a second bare client, so its overhead is the noise of the measurement.\n\n")
	table(w, r, "LoopbackOverhead", []column{unitCol("calls", "iterations"), unitCol("median ns", "median-ns"), unitCol("p90 ns", "p90-ns"), unitCol("overhead %", "overhead-%")})
	embed(w, charts, "overhead")
	writeCallers(w, r, charts)
	p("### Retry amplification during a total outage\n\n")
	p("The server answers UNAVAILABLE to everything; 32 callers call in a loop for 2s, each call with a 1s deadline; attempts the server saw per logical call (1 = no retry). Each library with its defaults (see the notes for the few settings that have none); ours with its default per-target budget, without a budget, and with its default breaker.\n\n")
	table(w, r, "Amplification", []column{unitCol("calls", "calls"), unitCol("attempts/call", "attempts/call"), ratioCol("vs ours", "attempts/call", "Amplification/ours", false)})
	embed(w, charts, "amplification")
	p("### Recovery after an outage\n\n")
	p("32 callers through a 1s outage (UNAVAILABLE) and 1.5s after it; time from the end of the outage to the end of the last 25ms window in which fewer than 99%% of the calls that ended succeeded. Every breaker has a 500ms open duration (the defaults, 5s to 60s, would outlast the scenario), its other settings at their defaults. recovered 0 means not within the 1.5s.\n\n")
	table(w, r, "Recovery", []column{unitCol("recovery ms", "recovery-ms"), unitCol("recovered", "recovered")})
	embed(w, charts, "recovery")
	p("### Hedging on a heavy-tail server\n\n")
	p("Every attempt takes 1-2ms, 2%% of attempts (drawn independently) 50ms; 8 callers. One extra attempt: ours after the observed 95th percentile (3ms until 20 samples) or after a fixed 3ms, grpc-go's native hedging and failsafe-go's after 3ms. Extra load is the attempts the server saw beyond one per call.\n\n")
	table(w, r, "Hedging", []column{unitCol("p50 ms", "p50-ms"), unitCol("p99 ms", "p99-ms"), ratioCol("p99 gain vs none", "p99-ms", "Hedging/none", true), unitCol("extra load %", "extra-load-%"), unitCol("failed", "failed")})
	embed(w, charts, "hedging-p99", "hedging-load")
	p("### Overload at 3x capacity\n\n")
	p("A server of 4 workers, 10ms per call (capacity 400 calls/s), FIFO queue in front of the workers, work done even for calls whose client gave up; 1200 calls/s offered open-loop for 2s, each with a 100ms deadline, no client retries. Goodput: calls that succeeded within their deadline, per second; admitted p99: latency of those.\n\n")
	table(w, r, "Overload", []column{unitCol("goodput/s", "goodput/s"), unitCol("goodput / capacity", "goodput/capacity"), unitCol("admitted p99 ms", "admitted-p99-ms"), unitCol("rejected", "shed")})
	embed(w, charts, "overload", "overload-p99")
	writeCPUShedding(w, r, charts)
	writeThrottling(w, r, charts)

	p("## Features: where a peer has no equivalent\n\n")
	p("%s\n", featureTable)
	if notes != "" {
		p("## Notes\n\n%s\n", strings.TrimSpace(notes))
		p("\n")
	}
	p("## Reproduce\n\n")
	p("```\nmake bench            # everything, about 25 minutes on 2 cores (cpu-shedding and throttling: 4 minutes a round, callers 1); writes bench/results/ and BENCHMARKS.md\n")
	p("cd bench && go test -run='^$' -bench=. -benchmem ./micro/         # micro-benchmarks only\n")
	p("cd bench && go test -run='^$' -bench='^Benchmark(BreakerAllowRecord|UnaryPipeline)Parallel$' -cpu=1,2,4,8 -benchmem ./micro/  # RunParallel as GOMAXPROCS grows\n")
	p("cd bench && go run ./cmd/scenarios -only callers                  # throughput and p99 at 1 to 256 callers, about 45s\n")
	p("cd bench && go run ./cmd/scenarios -only hedging -scale 0.5       # one scenario, shorter\n")
	p("cd bench && go run ./cmd/scenarios -only cpu-shedding,throttling  # the adaptive protections, about 4 minutes\n```\n")
}

// writeCPUShedding writes the section of the CPU-shedding scenario.
func writeCPUShedding(w io.Writer, r *results, charts map[string]string) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("### Shedding on a CPU-bound server\n\n")
	p("The server runs in a process of its own with GOMAXPROCS=1, pinned to one core and, where the run may create one (as root), in a cgroup v1 of its own with a quota of one CPU and a high CPU weight (the `# cpu-isolation` line of the raw results says what this run had), so that each library's CPU reading is the server's alone; the load generator runs in the main process. ")
	p("Each call costs 5ms of CPU, in 10 chunks between which the handler yields and checks its context (it stops working for a caller who gave up). ")
	p("Capacity: calls the unprotected server completes per second of its own CPU time, with 2 callers in a closed loop (calls/s is their throughput in wall time); unloaded latency: one call at a time. ")
	p("Then, for each protection, a fresh server process gets 1x, 2x, 4x and again 4x that capacity, open loop, 4s each, one after the other, every call with a 100ms deadline and no retry: the first 4x shows how fast each reacts, the second (after 12s of saturated CPU) where it settles. ")
	p("Goodput: calls that succeeded within their deadline, per second; steady: of the calls started in the second half of the 4s; shed: calls the server rejected; server CPU: cores the server process used (utime+stime from `/proc/<pid>/stat`).\n\n")
	p("Protections: our fixed bulkhead (limit 2), AIMD and Gradient (from 4), our CPU strategy (`bulkhead.NewCPU`, bulkhead limit 1000) with its defaults and with `MinLimit: 2`, go-zero's `load.NewAdaptiveShedder` (defaults) in a unary interceptor as its zrpc server uses it, and aegis' `bbr.NewLimiter` (defaults) as Kratos' rate-limit middleware uses it.\n\n")
	table(w, r, "CPUCapacity", []column{unitCol("capacity/s", "capacity/s"), unitCol("calls/s", "calls/s"), unitCol("unloaded p50 ms", "unloaded-p50-ms"), unitCol("unloaded p99 ms", "unloaded-p99-ms"), unitCol("server CPU", "server-cpu")})
	for _, load := range []string{"1x", "2x", "4x", "4x-sustained"} {
		p("#### %s capacity\n\n", load)
		table(w, r, "CPUShedding/"+load, []column{unitCol("goodput/s", "goodput/s"), unitCol("goodput / capacity", "goodput/capacity"),
			unitCol("steady goodput / capacity", "steady-goodput/capacity"), unitCol("admitted p50 ms", "admitted-p50-ms"),
			unitCol("admitted p99 ms", "admitted-p99-ms"), unitCol("shed %", "shed-%"), unitCol("server CPU", "server-cpu")})
	}
	embed(w, charts, "cpu-shedding", "cpu-shedding-p99")
}

// writeThrottling writes the section of the throttling scenario.
func writeThrottling(w io.Writer, r *results, charts map[string]string) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("### Client-side throttling against a backend at half the offered load\n\n")
	p("The backend answers at once and serves 200 calls a second (a token bucket with a burst of 10); it fails the rest with UNAVAILABLE. Callers offer 400 calls a second, open loop, for 4s, without retries, each client with fresh state. ")
	p("Backend attempts: calls that reached it, per second; refused: those it failed, the load the clients wasted. ")
	p("Ours: the adaptive throttle (`Policy.Throttle`) with its defaults (K 2) and with go-zero's K 1.5, and our breaker (defaults but a 500ms open duration, as in the recovery scenario); go-zero's breaker (an SRE throttle, K 1.5) with its zrpc client's acceptable codes; aegis' SRE breaker (K 1/0.6) marked as Kratos' middleware does; failsafe-go's adaptive throttler with its defaults.\n\n")
	table(w, r, "Throttling", []column{unitCol("backend attempts/s", "backend-attempts/s"), unitCol("refused by backend/s", "backend-refused/s"),
		unitCol("success %", "success-%"), unitCol("successes/s", "successes/s")})
	embed(w, charts, "throttling")
	p("Recovery: the same clients offer 100 calls a second to a backend without a limit that is healthy for 1s, down (UNAVAILABLE to everything) for 3s, then healthy for 5s. Recovery: time from the end of the outage to the end of the last 100ms window (by the calls' start) in which fewer than 90%% of the calls succeeded; recovered 0 means not within the 5s. Outage attempts: calls that reached the backend while it was down, per second.\n\n")
	table(w, r, "ThrottleRecovery", []column{unitCol("recovery ms", "recovery-ms"), unitCol("recovered", "recovered"), unitCol("outage attempts/s", "outage-attempts/s")})
}

// embed writes the charts of keys that exist as images.
func embed(w io.Writer, charts map[string]string, keys ...string) {
	for _, key := range keys {
		if path, ok := charts[key]; ok {
			fmt.Fprintf(w, "![%s](%s)\n\n", key, path)
		}
	}
}

// orDash returns s, or "-" when s is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// featureTable says which library offers what; "-" is a feature the
// library lacks, which is why its cell is missing from the tables above.
const featureTable = `| feature | ours | go-grpc-middleware v2 | grpc-go service config | failsafe-go | sony/gobreaker v2 | eapache/go-resiliency | hystrix-go | cenkalti/backoff v5 | x/sync semaphore |
|---|---|---|---|---|---|---|---|---|---|
| retry with backoff | yes | yes (interceptor) | yes | yes | - | yes | - | yes | - |
| retry budget / throttling | ratio budget (default on), token bucket | - | retryThrottling (token bucket) | budget (opt-in) | - | - | - | - | - |
| server pushback (grpc-retry-pushback-ms, RetryInfo) | yes | - | pushback trailer | - | - | - | - | Retry-After style only | - |
| circuit breaker | yes | - | - | yes | yes | yes | yes | - | - |
| two-step breaker (streams) | yes | - | - | yes | yes | - | yes (AllowRequest/ReportEvent) | - | - |
| bulkhead (client) | yes | - | - | yes | - | semaphore | concurrency limit inside Do | - | yes (semaphore) |
| server bulkhead with pushback | yes | - | - | yes (no pushback) | - | - | - | - | - |
| adaptive concurrency limit | yes (AIMD, Gradient) | - | - | yes (adaptive limiter) | - | - | - | - | - |
| CPU-aware load shedding (BBR rule; go-zero, aegis too) | yes (CPU strategy) | - | - | - | - | - | - | - | - |
| client-side adaptive throttling (SRE; go-zero, aegis too) | yes | - | - | yes (adaptive throttler) | - | - | - | - | - |
| hedging | yes (fixed or percentile delay) | - | parsed, not implemented in grpc-go | yes (fixed or quantile delay) | - | - | - | - | - |
| gRPC status classification table | yes | codes list | codes list | codes list (gRPC builder) | - | - | - | - | - |
| stream retries until commit | yes | server streams only | yes | - | - | - | - | - | - |
`
