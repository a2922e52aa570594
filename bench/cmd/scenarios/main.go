package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"strings"
	"time"
)

// metric is one measured value and its unit, as in a benchmark line.
type metric struct {
	value float64
	unit  string
}

// maxScale bounds -scale, so that every scaled duration stays far from
// overflowing and every run stays bounded (100 is about two hours).
const maxScale = 100

// maxCount bounds -count.
const maxCount = 100

// settings scale a run and say where its results go.
type settings struct {
	scale float64
	// rounds is how many rounds of the scenarios run (-count); 0 counts
	// as 1.
	rounds int
	out    io.Writer
}

// duration scales d.
func (s settings) duration(d time.Duration) time.Duration {
	return time.Duration(float64(d) * s.scale)
}

// count scales n, to at least 1.
func (s settings) count(n int) int { return max(1, int(math.Round(float64(n)*s.scale))) }

// emit prints one result in the Go benchmark format: name, count, then
// value-unit pairs.
func (s settings) emit(name string, n int, ms ...metric) {
	var b strings.Builder
	fmt.Fprintf(&b, "Benchmark%s\t%d", name, n)
	for _, m := range ms {
		fmt.Fprintf(&b, "\t%.4g %s", m.value, m.unit)
	}
	fmt.Fprintln(s.out, b.String())
}

// scenarios are the scenarios in the order they run.
var scenarios = []struct {
	name string
	run  func(settings) error
}{
	{"overhead", runOverhead},
	{"callers", runCallers},
	{"amplification", runAmplification},
	{"recovery", runRecovery},
	{"hedging", runHedging},
	{"overload", runOverload},
	{"cpu-shedding", runCPUShedding},
	{"throttling", runThrottling},
}

func main() {
	if os.Getenv(envCPUServer) != "" {
		if err := cpuServerMain(os.Stdin, os.Stdout); err != nil {
			log.Fatal(err)
		}
		return
	}
	quietPeers()
	scale := flag.Float64("scale", 1, "multiply every duration and count by this (0.1 for a smoke run)")
	only := flag.String("only", "", "comma-separated scenarios to run (default all): overhead, callers, amplification, recovery, hedging, overload, cpu-shedding, throttling")
	count := flag.Int("count", 1, "run the scenarios this many times, one round after the other (the report takes the median)")
	flag.Parse()
	if err := run(settings{scale: *scale, rounds: *count, out: os.Stdout}, *only); err != nil {
		log.Fatal(err)
	}
}

// run runs the scenarios named in only (all when empty), one after the
// other.
func run(s settings, only string) error {
	if !(s.scale > 0 && s.scale <= maxScale) {
		return fmt.Errorf("scenarios: -scale %v: must be above 0 and at most %v", s.scale, maxScale)
	}
	want := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	for n := range want {
		found := false
		for _, sc := range scenarios {
			found = found || sc.name == n
		}
		if !found {
			return fmt.Errorf("scenarios: -only %q: no scenario %q", only, n)
		}
	}
	if s.rounds < 0 || s.rounds > maxCount {
		return fmt.Errorf("scenarios: -count %d: must be between 1 and %d", s.rounds, maxCount)
	}
	for range max(s.rounds, 1) {
		for _, sc := range scenarios {
			if len(want) > 0 && !want[sc.name] {
				continue
			}
			start := time.Now()
			if err := sc.run(s); err != nil {
				return fmt.Errorf("scenario %s: %w", sc.name, err)
			}
			fmt.Fprintf(s.out, "# scenario %s took %v\n", sc.name, time.Since(start).Round(time.Millisecond))
		}
	}
	return nil
}
