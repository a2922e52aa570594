package breaker

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Under concurrent callers, a fake clock jumping forward and random
// outcomes, half-open never has more probes of one generation in flight
// than Config.MaxHalfOpenProbes. (Probes of an older generation may still
// run, but their results are discarded.)
func TestStressHalfOpenProbeLimit(t *testing.T) {
	const (
		maxProbes  = 3
		goroutines = 8
		calls      = 3000
	)
	var (
		mu       sync.Mutex
		inFlight = map[uint64]int{} // generation -> probes in flight
		peak     int
		probes   atomic.Int64
	)
	b, clk := newFake(Config{FailureThreshold: 2, SuccessThreshold: 2, MaxHalfOpenProbes: maxProbes, Timeout: time.Millisecond})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range calls {
				if r.IntN(10) == 0 {
					clk.advance(time.Millisecond)
				}
				p, err := b.Allow()
				if err != nil {
					continue
				}
				if p.State() == HalfOpen {
					probes.Add(1)
					mu.Lock()
					inFlight[p.gen]++
					peak = max(peak, inFlight[p.gen])
					mu.Unlock()
				}
				o := Success
				if r.IntN(3) == 0 {
					o = Failure
				}
				if p.State() == HalfOpen {
					// Leave the book before the breaker frees the slot.
					mu.Lock()
					inFlight[p.gen]--
					mu.Unlock()
				}
				p.Done(o)
			}
		})
	}
	wg.Wait()
	if peak > maxProbes {
		t.Fatalf("peak of %d concurrent probes in one generation, limit %d", peak, maxProbes)
	}
	if probes.Load() == 0 || peak == 0 {
		t.Fatal("the stress never half-opened the breaker: it proves nothing")
	}
	m := b.Metrics()
	if m.HalfOpenProbes != 0 {
		t.Fatalf("%d probes still counted in flight after every call finished", m.HalfOpenProbes)
	}
	t.Logf("probes %d, peak %d, transitions %d, rejections %d, discarded %d", probes.Load(), peak, m.Transitions, m.Rejections, m.Discarded)
}

// allowConcurrently makes calls calls on b from each of goroutines
// goroutines at once; call i of goroutine g fails when (g+i)%failEvery is
// 0, so that goroutines*calls/failEvery of them fail when failEvery
// divides calls. Every call must be allowed.
func allowConcurrently(t *testing.T, b *Breaker, goroutines, calls, failEvery int) {
	t.Helper()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				p, err := b.Allow()
				if err != nil {
					t.Error(err)
					return
				}
				if (g+i)%failEvery == 0 {
					p.Done(Failure)
				} else {
					p.Done(Success)
				}
			}
		})
	}
	wg.Wait()
}

// The lock-free closed path loses no count: every recorded outcome ends up
// in the metrics and in the window.
func TestConcurrentClosedCounts(t *testing.T) {
	for _, cfg := range []Config{
		{FailureThreshold: 1 << 30},
		{FailureRateThreshold: 100, WindowSize: 1 << 16, MinimumCalls: 1 << 16},
		{FailureRateThreshold: 100, WindowType: TimeWindow, WindowPeriod: time.Hour, MinimumCalls: 1 << 20},
	} {
		b, _ := newFake(cfg)
		const goroutines, calls = 8, 2000
		allowConcurrently(t, b, goroutines, calls, 4)
		m := b.Metrics()
		if m.State != Closed || m.Calls != goroutines*calls || m.Failures != goroutines*calls/4 {
			t.Fatalf("%+v: state %v calls %d failures %d, want closed, %d, %d", cfg, m.State, m.Calls, m.Failures, goroutines*calls, goroutines*calls/4)
		}
		if cfg.FailureRateThreshold > 0 && (m.WindowCalls != goroutines*calls || m.WindowFailures != goroutines*calls/4) {
			t.Fatalf("%+v: window calls %d failures %d, want %d, %d", cfg, m.WindowCalls, m.WindowFailures, goroutines*calls, goroutines*calls/4)
		}
	}
}

// Concurrent failures open the breaker exactly once per generation, and the
// listener sees a consistent chain of transitions, each starting where the
// previous one ended.
func TestConcurrentTransitionsChain(t *testing.T) {
	var (
		mu   sync.Mutex
		list []StateChange
	)
	b, clk := newFake(Config{
		FailureThreshold: 3, SuccessThreshold: 1, Timeout: time.Millisecond,
		FailureRateThreshold: 50, WindowSize: 10, MinimumCalls: 5,
		OnStateChange: func(ev StateChange) {
			mu.Lock()
			list = append(list, ev)
			mu.Unlock()
		},
	})
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 2))
			for range 2000 {
				switch r.IntN(50) {
				case 0:
					clk.advance(time.Millisecond)
				case 1:
					b.Reset()
				case 2:
					b.ForceOpen()
				case 3:
					b.ForceClosed()
				}
				if p, err := b.Allow(); err == nil {
					p.Done(Outcome(r.IntN(3)))
				}
			}
		})
	}
	wg.Wait()
	b.Reset() // ends in a known state
	mu.Lock()
	defer mu.Unlock()
	if len(list) < 10 {
		t.Fatalf("only %d transitions: the test proves nothing", len(list))
	}
	for i := 1; i < len(list); i++ {
		if list[i].From != list[i-1].To {
			t.Fatalf("event %d %+v does not start where event %d %+v ended", i, list[i], i-1, list[i-1])
		}
	}
	if last := list[len(list)-1]; last.To != Closed || last.Mode != Auto {
		t.Fatalf("last event %+v, want closed auto after Reset", last)
	}
}
