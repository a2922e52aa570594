package breaker

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tally counts, per outcome, the results OnResult reported; safe for
// concurrent use.
type tally struct {
	successes, failures, ignored, slows, discarded atomic.Uint64
}

func (t *tally) add(r Result) {
	switch {
	case r.Discarded:
		t.discarded.Add(1)
		return
	case r.Outcome == Success:
		t.successes.Add(1)
	case r.Outcome == Failure:
		t.failures.Add(1)
	default:
		t.ignored.Add(1)
	}
	if r.Slow {
		t.slows.Add(1)
	}
}

// Under concurrent callers with mixed outcomes, transitions, rejections and
// outcomes recorded after the breaker moved on, the striped counters are
// exact at quiescence: Metrics agrees, count for count, with what OnResult
// and the callers saw.
func TestStressMetricsExact(t *testing.T) {
	cfgs := []Config{
		{FailureThreshold: 3, SuccessThreshold: 1, Timeout: time.Millisecond},
		{FailureThreshold: 8, FailureRateThreshold: 40, WindowSize: 20, MinimumCalls: 5,
			SlowCallDuration: time.Millisecond, SlowCallRateThreshold: 60, Timeout: time.Millisecond},
		{WindowType: TimeWindow, FailureRateThreshold: 10, WindowPeriod: time.Second, MinimumCalls: 5,
			SlowCallDuration: time.Millisecond, SlowCallRateThreshold: 15, SuccessThreshold: 2, MaxHalfOpenProbes: 2, Timeout: time.Millisecond},
	}
	for ci, cfg := range cfgs {
		var seen tally
		cfg.OnResult = seen.add
		b, clk := newFake(cfg)
		const goroutines, calls = 8, 3000
		var permits, rejections atomic.Uint64
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(ci), uint64(g)))
				for range calls {
					if r.IntN(40) == 0 {
						clk.advance(time.Millisecond)
					}
					if r.IntN(500) == 0 {
						b.Reset()
					}
					p, err := b.Allow()
					if err != nil {
						rejections.Add(1)
						continue
					}
					permits.Add(1)
					o := Success
					if r.IntN(4) == 0 {
						o = Outcome(r.IntN(3))
					}
					switch r.IntN(3) {
					case 0:
						p.Done(o)
					case 1:
						p.DoneAt(o, time.Now())
					default:
						p.DoneDuration(o, time.Duration(r.IntN(2))*time.Millisecond)
					}
				}
			})
		}
		wg.Wait()
		m := b.Metrics()
		if m.Successes != seen.successes.Load() || m.Failures != seen.failures.Load() ||
			m.Ignored != seen.ignored.Load() || m.SlowCalls != seen.slows.Load() ||
			m.Discarded != seen.discarded.Load() {
			t.Errorf("config %d: metrics %+v disagree with OnResult: successes %d failures %d ignored %d slow %d discarded %d",
				ci, m, seen.successes.Load(), seen.failures.Load(), seen.ignored.Load(), seen.slows.Load(), seen.discarded.Load())
		}
		if m.Calls+m.Discarded != permits.Load() || m.Rejections != rejections.Load() {
			t.Errorf("config %d: calls %d + discarded %d, rejections %d; want %d permits, %d rejections",
				ci, m.Calls, m.Discarded, m.Rejections, permits.Load(), rejections.Load())
		}
		if m.Transitions < 10 || m.Rejections == 0 || m.Failures == 0 {
			t.Errorf("config %d: %d transitions, %d rejections, %d failures: the stress proves little", ci, m.Transitions, m.Rejections, m.Failures)
		}
		t.Logf("config %d: %+v", ci, m)
	}
}

// A breaker keeps its stripes when GOMAXPROCS changes: more goroutines
// running at once than it was sized for lose no count.
func TestStripesOutliveGOMAXPROCS(t *testing.T) {
	old := runtime.GOMAXPROCS(1)
	b := New(Config{FailureThreshold: 1 << 30})
	runtime.GOMAXPROCS(max(old, 4))
	defer runtime.GOMAXPROCS(old)
	if n := 1 << (64 - b.stripeShift); n != 2 {
		t.Fatalf("%d stripes at GOMAXPROCS 1, want 2", n)
	}
	const goroutines, calls = 16, 1000
	allowConcurrently(t, b, goroutines, calls, 5)
	if m := b.Metrics(); m.Calls != goroutines*calls || m.Failures != goroutines*calls/5 {
		t.Fatalf("calls %d failures %d, want %d, %d", m.Calls, m.Failures, goroutines*calls, goroutines*calls/5)
	}
}

// The stripe count follows GOMAXPROCS: twice it, rounded up to a power of
// two, between 2 and maxStripes.
func TestNumStripes(t *testing.T) {
	old := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(old)
	for _, c := range []struct{ procs, want int }{{1, 2}, {2, 4}, {3, 8}, {4, 8}, {64, maxStripes}} {
		runtime.GOMAXPROCS(c.procs)
		if got := numStripes(); got != c.want {
			t.Errorf("numStripes at GOMAXPROCS %d = %d, want %d", c.procs, got, c.want)
		}
	}
}

// A default breaker takes at most 576 bytes of heap, everything it
// allocates included, until concurrent calls make it spread its counters;
// with its stripes (4 at GOMAXPROCS 2), at most 1 KiB + 64 bytes.
func TestDefaultBreakerMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation sizes")
	}
	old := runtime.GOMAXPROCS(2)
	defer runtime.GOMAXPROCS(old)
	const n = 10000
	keep := make([]*Breaker, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range keep {
		keep[i] = New(Config{})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (after.HeapAlloc - before.HeapAlloc) / n
	for _, b := range keep {
		b.grow()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := (after.HeapAlloc - before.HeapAlloc) / n
	runtime.KeepAlive(keep)
	t.Logf("%d bytes per default breaker, %d with its stripes", per, grown)
	if per > 576 || grown > 1088 {
		t.Fatalf("%d bytes per default breaker, %d with its stripes; want at most 576, 1088", per, grown)
	}
}

// A breaker that never sees two calls at once keeps its counts in base and
// never allocates stripes; calls that contend make it spread them, and the
// counts stay exact across the change.
func TestStripesOnContention(t *testing.T) {
	b := New(Config{FailureThreshold: 1 << 30})
	run(t, b, Success, 10000)
	if b.cells.Load() != nil {
		t.Fatal("one goroutine's calls allocated stripes")
	}
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("contention needs two Ps")
	}
	const goroutines, batch = 8, 1000
	var wg sync.WaitGroup
	var total atomic.Int64
	var stop atomic.Bool
	deadline := time.Now().Add(30 * time.Second)
	for range goroutines {
		wg.Go(func() {
			for !stop.Load() && time.Now().Before(deadline) {
				for range batch {
					if p, err := b.Allow(); err == nil {
						p.Done(Success)
					}
				}
				total.Add(batch)
				if b.cells.Load() != nil {
					stop.Store(true)
				}
			}
		})
	}
	wg.Wait()
	if b.cells.Load() == nil {
		t.Fatalf("%d concurrent calls never contended for base", total.Load())
	}
	if m := b.Metrics(); m.Successes != uint64(10000+total.Load()) {
		t.Fatalf("%d successes, want %d", m.Successes, 10000+total.Load())
	}
}

// Consecutive failures recorded at once by many goroutines all count: with
// no success among them the run is exact, and reaching the threshold opens
// the breaker once. A success ends the run.
func TestConcurrentConsecutiveFailures(t *testing.T) {
	const goroutines, calls = 8, 500
	var opens atomic.Int64
	b, _ := newFake(Config{FailureThreshold: goroutines*calls + 1, OnStateChange: func(ev StateChange) {
		if ev.To == Open {
			opens.Add(1)
		}
	}})
	fail := func(n int) {
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for range n {
					if p, err := b.Allow(); err == nil {
						p.Done(Failure)
					}
				}
			})
		}
		wg.Wait()
	}
	fail(calls)
	if m := b.Metrics(); m.ConsecutiveFailures != goroutines*calls || m.State != Closed {
		t.Fatalf("run %d, state %v; want %d, closed", m.ConsecutiveFailures, m.State, goroutines*calls)
	}
	mustAllow(t, b).Done(Success)
	if m := b.Metrics(); m.ConsecutiveFailures != 0 {
		t.Fatalf("run %d after a success, want 0", m.ConsecutiveFailures)
	}
	fail(calls)
	mustAllow(t, b).Done(Failure)
	if m := b.Metrics(); m.State != Open || opens.Load() != 1 {
		t.Fatalf("state %v after %d opens, want open once", m.State, opens.Load())
	}
}
