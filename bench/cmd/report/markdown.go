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

// goals checks the goals of the issue against r.
func goals(r *results) []goal {
	var gs []goal
	// Breaker: 0 allocs, and 3x the throughput of sony/gobreaker and
	// failsafe-go under RunParallel.
	{
		g := goal{text: "Breaker allow+record: 0 allocs/op, and at least 3x the throughput of sony/gobreaker and failsafe-go in RunParallel", status: "not measured"}
		a1, ok1 := r.get("BreakerAllowRecord/ours", "allocs/op")
		a2, ok2 := r.get("BreakerAllowRecordParallel/ours", "allocs/op")
		ours, ok3 := r.get("BreakerAllowRecordParallel/ours", "ns/op")
		sony, ok4 := r.get("BreakerAllowRecordParallel/sony-gobreaker", "ns/op")
		fs, ok5 := r.get("BreakerAllowRecordParallel/failsafe-go", "ns/op")
		if ok1 && ok2 && ok3 && ok4 && ok5 {
			g.measured = fmt.Sprintf("%s and %s allocs/op (serial, parallel); throughput %sx sony/gobreaker, %sx failsafe-go",
				format(a1), format(a2), format(sony/ours), format(fs/ours))
			g.status = verdict(a1 == 0 && a2 == 0 && sony/ours >= 3 && fs/ours >= 3)
		}
		gs = append(gs, g)
	}
	// Pipeline: at most half failsafe-go's retry+breaker, no more than
	// go-grpc-middleware's retry, at most 2 allocs beyond the invoker.
	{
		g := goal{text: "Full unary pipeline, success path: at most 0.5x the ns/op of failsafe-go retry+breaker, at most 1x go-grpc-middleware's retry alone, at most 2 allocs/op beyond the invoker", status: "not measured"}
		ours, ok1 := r.get("UnaryPipeline/ours-full", "ns/op")
		fs, ok2 := r.get("UnaryPipeline/failsafe-go-retry+breaker", "ns/op")
		mw, ok3 := r.get("UnaryPipeline/go-grpc-middleware-retry", "ns/op")
		allocs, ok4 := r.get("UnaryPipeline/ours-full", "allocs/op")
		bare, ok5 := r.get("UnaryPipeline/bare", "allocs/op")
		if ok1 && ok2 && ok3 && ok4 && ok5 {
			g.measured = fmt.Sprintf("%sx failsafe-go retry+breaker, %sx go-grpc-middleware retry, %s allocs/op beyond the invoker",
				format(ours/fs), format(ours/mw), format(allocs-bare))
			g.status = verdict(ours <= fs/2 && ours <= mw && allocs-bare <= 2)
		}
		gs = append(gs, g)
	}
	{
		g := goal{text: "Loopback overhead of the full pipeline: under 3% of a bare call's median latency", status: "not measured"}
		if v, ok := r.get("LoopbackOverhead/ours-full", "overhead-%"); ok {
			g.measured = fmt.Sprintf("%s%% of the bare call's median", format(v))
			if noise, ok := r.get("LoopbackOverhead/none-control", "overhead-%"); ok {
				g.measured += fmt.Sprintf(" (a second bare client, the noise: %s%%)", format(noise))
			}
			g.status = verdict(v < 3)
		}
		gs = append(gs, g)
	}
	{
		g := goal{text: "Amplification during a total outage: at most 1.2 attempts per call with the default budget", status: "not measured"}
		if v, ok := r.get("Amplification/ours", "attempts/call"); ok {
			g.measured = fmt.Sprintf("%s attempts per call", format(v))
			g.status = verdict(v <= 1.2)
		}
		gs = append(gs, g)
	}
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
	return gs
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

	p("## Loopback gRPC scenarios\n\n")
	p("`go run ./cmd/scenarios` in `bench`: real gRPC servers from `testservice` on 127.0.0.1, one fresh server and client per library; with `-count`, the median of the rounds.\n\n")
	p("### Overhead of the client interceptors\n\n")
	p("Serial calls, every client once per round in a rotating order; median and p90 latency. Overhead is the client's median over the bare call's (\"none\"), in percent; \"none-control\" is a second bare client, so its overhead is the noise of the measurement.\n\n")
	table(w, r, "LoopbackOverhead", []column{unitCol("calls", "iterations"), unitCol("median ns", "median-ns"), unitCol("p90 ns", "p90-ns"), unitCol("overhead %", "overhead-%")})
	embed(w, charts, "overhead")
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

	p("## Features: where a peer has no equivalent\n\n")
	p("%s\n", featureTable)
	if notes != "" {
		p("## Notes\n\n%s\n", strings.TrimSpace(notes))
		p("\n")
	}
	p("## Reproduce\n\n")
	p("```\nmake bench            # everything, about 6 minutes on 2 cores; writes bench/results/ and BENCHMARKS.md\n")
	p("cd bench && go test -run='^$' -bench=. -benchmem ./micro/         # micro-benchmarks only\n")
	p("cd bench && go run ./cmd/scenarios -only hedging -scale 0.5       # one scenario, shorter\n```\n")
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
| hedging | yes (fixed or percentile delay) | - | parsed, not implemented in grpc-go | yes (fixed or quantile delay) | - | - | - | - | - |
| gRPC status classification table | yes | codes list | codes list | codes list (gRPC builder) | - | - | - | - | - |
| stream retries until commit | yes | server streams only | yes | - | - | - | - | - | - |
`
