package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
)

// TestMain runs the CPU-shedding scenario's server process when this test
// binary is started as one, and otherwise the tests, with go-zero's logs
// kept quiet and the goroutines that go-zero and aegis start when their
// packages load (CPU samplers, a signal handler) not counted as leaks.
func TestMain(m *testing.M) {
	if os.Getenv(envCPUServer) != "" {
		if err := cpuServerMain(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	quietPeers()
	// Those goroutines are running now, before any test.
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// A server in a total outage sees exactly one attempt per call from a
// client without retries, and exactly three from ours without a budget
// (3 attempts by default, whose backoff fits in the 1s deadline).
func TestAmplificationCountsAttempts(t *testing.T) {
	for _, c := range []struct {
		lib  lib
		want float64
	}{
		{bareLib(), 1},
		{oursLib("ours-no-budget", interceptors.Policy{Retry: &interceptors.RetryPolicy{Budget: interceptors.NoBudget}}), 3},
	} {
		attempts, calls, err := amplification(c.lib, 100*time.Millisecond, 64)
		if err != nil {
			t.Fatal(err)
		}
		if calls == 0 {
			t.Fatalf("%s: no call made", c.lib.name)
		}
		if got := float64(attempts) / float64(calls); got != c.want {
			t.Errorf("%s: %d attempts for %d calls = %v per call, want %v", c.lib.name, attempts, calls, got, c.want)
		}
	}
}

// Our default budget holds the retries of a long outage far below the
// policy's 3 attempts per call.
func TestAmplificationBudgetLimitsRetries(t *testing.T) {
	l := oursLib("ours", interceptors.Policy{Retry: &interceptors.RetryPolicy{}})
	// Enough calls to spend the budget's floor of 100 retries many times.
	attempts, calls, err := amplification(l, 10*time.Second, 3000)
	if err != nil {
		t.Fatal(err)
	}
	if got := float64(attempts) / float64(calls); got > 1.6 {
		t.Errorf("%d attempts for %d calls = %.2f per call, want at most 1.6 with the default budget", attempts, calls, got)
	}
}

func TestRecoveryTime(t *testing.T) {
	for _, c := range []struct {
		name      string
		ok, all   []int
		want      time.Duration
		recovered bool
	}{
		{"at once", []int{100, 100, 100}, []int{100, 100, 100}, 0, true},
		{"one bad window", []int{10, 100, 100}, []int{100, 100, 100}, bucket, true},
		{"99% is enough", []int{99, 98, 100}, []int{100, 100, 100}, 2 * bucket, true},
		{"empty windows are skipped", []int{0, 0, 100, 0}, []int{10, 0, 100, 0}, bucket, true},
		{"never", []int{0, 0, 0}, []int{10, 10, 10}, 3 * bucket, false},
	} {
		got, recovered := recoveryTime(c.ok, c.all)
		if got != c.want || recovered != c.recovered {
			t.Errorf("%s: recoveryTime = %v, %v; want %v, %v", c.name, got, recovered, c.want, c.recovered)
		}
	}
}

// Our hedging cuts the 50ms tail of the heavy-tail server from the p99,
// which no hedging keeps.
func TestHedgingCutsTheTail(t *testing.T) {
	none, err := hedging(bareLib(), 500, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hedged, err := hedging(hedgingLibs()[1], 500, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if p := percentile(none.latencies, 99); p < 50*time.Millisecond {
		t.Errorf("no hedging: p99 %v, want the 50ms tail", p)
	}
	if p := percentile(hedged.latencies, 99); p >= 40*time.Millisecond {
		t.Errorf("ours: p99 %v, want well under the 50ms tail", p)
	}
	if hedged.attempts <= int64(len(hedged.latencies)) {
		t.Errorf("ours: %d attempts for %d calls, want some hedges", hedged.attempts, len(hedged.latencies))
	}
}

// At 3x capacity, the server bulkhead sheds calls and keeps more goodput
// than the unprotected server, whose queue makes calls miss their deadline.
func TestOverloadBulkheadKeepsGoodput(t *testing.T) {
	ps := protections()
	none, err := overload(ps[0], 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	shed, err := overload(ps[1], 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if shed.shed == 0 {
		t.Error("server bulkhead: nothing shed at 3x capacity")
	}
	if len(shed.latencies) <= len(none.latencies) {
		t.Errorf("goodput: %d calls with the bulkhead, %d without; want more with it", len(shed.latencies), len(none.latencies))
	}
}

func TestRunRejectsBadSettings(t *testing.T) {
	var out bytes.Buffer
	for _, c := range []struct {
		s    settings
		only string
		want string
	}{
		{settings{scale: 0, out: &out}, "", "-scale 0"},
		{settings{scale: math.NaN(), out: &out}, "", "-scale NaN"},
		{settings{scale: 1000, out: &out}, "", "-scale 1000"},
		{settings{scale: 1, rounds: -1, out: &out}, "", "-count -1"},
		{settings{scale: 1, out: &out}, "overhead,nosuch", `no scenario "nosuch"`},
	} {
		err := run(c.s, c.only)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("run(%v, %q) = %v, want an error with %q", c.s.scale, c.only, err, c.want)
		}
	}
}

// Every scenario runs end to end at a small scale and prints one benchmark
// line per library.
func TestScenariosPrintBenchmarkLines(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every scenario")
	}
	var out bytes.Buffer
	only := "overhead,overload,cpu-shedding,throttling"
	want := len(overheadLibs()) + len(protections()) + 1 + len(cpuProtections)*len(cpuLoads) + 2*len(throttlingLibs())
	if !raceEnabled { // see raceEnabled
		only, want = only+",hedging", want+len(hedgingLibs())
	}
	if err := run(settings{scale: 0.05, out: &out}, only); err != nil {
		t.Fatal(err)
	}
	lines := 0
	for l := range strings.Lines(out.String()) {
		if strings.HasPrefix(l, "Benchmark") {
			lines++
			if len(strings.Fields(l))%2 != 0 {
				t.Errorf("malformed line %q", l)
			}
		}
	}
	if lines != want {
		t.Errorf("%d benchmark lines, want %d:\n%s", lines, want, out.String())
	}
}

// The callers scenario measures every client at every concurrency, in the
// Go benchmark format, with calls made and their latencies ordered.
func TestCallersScenario(t *testing.T) {
	var out bytes.Buffer
	if err := run(settings{scale: 0.02, out: &out}, "callers"); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for l := range strings.Lines(out.String()) {
		if !strings.HasPrefix(l, "BenchmarkCallers/") {
			continue
		}
		f := strings.Fields(l)
		if len(f) != 8 || f[3] != "calls/s" || f[5] != "p99-ns" || f[7] != "p50-ns" {
			t.Fatalf("malformed line %q", l)
		}
		seen[strings.TrimPrefix(f[0], "Benchmark")] = true
		var calls int
		var rate, p99, p50 float64
		if _, err := fmt.Sscan(f[1]+" "+f[2]+" "+f[4]+" "+f[6], &calls, &rate, &p99, &p50); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if calls <= 0 || rate <= 0 || p50 <= 0 || p99 < p50 {
			t.Errorf("%q: want calls, a rate and p50 <= p99, all above 0", l)
		}
	}
	for _, l := range callersLibs() {
		for _, n := range callerCounts {
			if name := fmt.Sprintf("Callers/%s/callers=%d", l.name, n); !seen[name] {
				t.Errorf("no line for %s:\n%s", name, out.String())
			}
		}
	}
	if len(seen) != len(callersLibs())*len(callerCounts) {
		t.Errorf("%d lines, want %d", len(seen), len(callersLibs())*len(callerCounts))
	}
}
