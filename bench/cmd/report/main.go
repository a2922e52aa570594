package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// machine describes the machine a run happened on.
type machine struct {
	cpu, nproc, goVersion string
}

// thisMachine describes the machine report runs on, which `make bench` runs
// right after the benchmarks: the CPU model from cpuinfo (or from go test's
// cpu line, cpuLine, when cpuinfo has none), the number of CPUs and the Go
// version.
func thisMachine(cpuinfo, cpuLine string) machine {
	m := machine{cpu: cpuLine, nproc: strconv.Itoa(runtime.NumCPU()), goVersion: runtime.Version()}
	sc := bufio.NewScanner(strings.NewReader(cpuinfo))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			m.cpu = strings.TrimSpace(v)
			break
		}
	}
	if m.cpu == "" {
		m.cpu = "unknown"
	}
	return m
}

// svgChart is a chart that writes itself as SVG.
type svgChart interface {
	writeSVG(w io.Writer) error
}

// charts returns the charts of the scenario results and of the breaker
// and keys micro-benchmarks, keyed by the name of their file without
// extension.
func charts(r *results) map[string]svgChart {
	bars := func(group, unit string) []bar {
		var bs []bar
		for _, lib := range r.group(group) {
			if v, ok := r.get(group+"/"+lib, unit); ok {
				bs = append(bs, bar{label: lib, value: v, ours: strings.HasPrefix(lib, "ours")})
			}
		}
		return bs
	}
	cs := map[string]chart{
		"overhead":         {title: "Loopback overhead over a bare call", unit: "median latency, % over the bare call's; goal: under 3%", bars: bars("LoopbackOverhead", "overhead-%"), marker: 3, markerLabel: "goal 3%"},
		"amplification":    {title: "Retry amplification, total outage, 32 callers", unit: "attempts the server saw per logical call; goal: at most 1.2", bars: bars("Amplification", "attempts/call"), marker: 1.2, markerLabel: "goal 1.2"},
		"recovery":         {title: "Recovery after a 1s outage", unit: "ms from the end of the outage until 99% of calls succeed (lower is better)", bars: bars("Recovery", "recovery-ms")},
		"hedging-p99":      {title: "Hedging on a heavy-tail server: p99", unit: "p99 latency in ms (lower is better)", bars: bars("Hedging", "p99-ms")},
		"hedging-load":     {title: "Hedging on a heavy-tail server: extra load", unit: "attempts beyond one per call, %; goal: at most 10%", bars: bars("Hedging", "extra-load-%"), marker: 10, markerLabel: "goal 10%"},
		"overload":         {title: "Goodput at 3x capacity", unit: "calls that succeeded in time, as a share of the capacity (higher is better)", bars: bars("Overload", "goodput/capacity"), marker: 1, markerLabel: "capacity"},
		"overload-p99":     {title: "Admitted p99 at 3x capacity", unit: "p99 latency of the successful calls, ms (deadline 100ms)", bars: bars("Overload", "admitted-p99-ms")},
		"cpu-shedding":     {title: "CPU-bound server at 4x capacity, sustained", unit: "goodput as a share of the capacity; goal: at least 0.9", bars: bars("CPUShedding/4x-sustained", "goodput/capacity"), marker: 0.9, markerLabel: "goal 0.9"},
		"cpu-shedding-p99": {title: "CPU-bound server at 4x capacity, sustained: admitted p99", unit: "p99 latency of the successful calls, ms (deadline 100ms)", bars: bars("CPUShedding/4x-sustained", "admitted-p99-ms")},
		"throttling":       {title: "Backend at half the offered load: wasted load", unit: "attempts the backend refused, per second (lower is better)", bars: bars("Throttling", "backend-refused/s")},
		"breaker":          {title: "Breaker allow+record under RunParallel", unit: "ns/op (lower is better)", bars: bars("BreakerAllowRecordParallel", "ns/op")},
	}
	out := map[string]svgChart{}
	for k, c := range cs {
		if len(c.bars) > 0 {
			out[k] = c
		}
	}
	for k, c := range callersCharts(r) {
		out[k] = c
	}
	if c, ok := keysChart(r); ok {
		out["keys"] = c
	}
	return out
}

func main() {
	in := flag.String("in", "results/raw.txt", "benchmark output to read")
	md := flag.String("md", "../BENCHMARKS.md", "Markdown report to write")
	svgDir := flag.String("svg", "results", "directory for the SVG charts")
	notesFile := flag.String("notes", "", "Markdown file whose text goes into the report's notes (optional)")
	flag.Parse()
	if err := run(*in, *md, *svgDir, *notesFile); err != nil {
		log.Fatal(err)
	}
}

// run reads in and writes the report and charts.
func run(in, md, svgDir, notesFile string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	notes := ""
	if notesFile != "" {
		b, err := os.ReadFile(notesFile)
		if err != nil {
			return err
		}
		notes = string(b)
	}
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo") // absent off Linux: the cpu line stands in
	if err := os.MkdirAll(svgDir, 0o755); err != nil {
		return err
	}
	mdDir, err := filepath.Abs(filepath.Dir(md))
	if err != nil {
		return err
	}
	links := map[string]string{}
	for name, c := range charts(r) {
		path := filepath.Join(svgDir, name+".svg")
		var b bytes.Buffer
		if err := c.writeSVG(&b); err != nil {
			return err
		}
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			return err
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(mdDir, abs)
		if err != nil {
			return err
		}
		links[name] = filepath.ToSlash(rel)
	}
	var b bytes.Buffer
	writeMarkdown(&b, r, thisMachine(string(cpuinfo), r.cpu), notes, links)
	return os.WriteFile(md, b.Bytes(), 0o644)
}
