package bulkhead

import (
	"container/heap"
	"testing"
	"time"
)

// server simulates a service of capacity c: up to c executions at once take
// base each; beyond that they queue inside the service and, by Little's
// law, an execution admitted with n in flight takes base*n/c.
type server struct {
	c    int
	base time.Duration
}

func (s server) latency(inFlight int) time.Duration {
	if inFlight <= s.c {
		return s.base
	}
	return time.Duration(int64(s.base) * int64(inFlight) / int64(s.c))
}

// running is an execution in the simulated service.
type running struct {
	end time.Time
	p   Permit
}

type runningHeap []running

func (h runningHeap) Len() int           { return len(h) }
func (h runningHeap) Less(i, j int) bool { return h[i].end.Before(h[j].end) }
func (h runningHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runningHeap) Push(x any)        { *h = append(*h, x.(running)) }
func (h *runningHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// simulate drives a bulkhead with strategy s in front of srv for d of
// simulated time on an injected clock, under a demand that always exceeds
// the limit, and returns the limit at every release from settleAfter on.
func simulate(s Strategy, initial int, srv server, d, settleAfter time.Duration) []int {
	clk := &fakeClock{t: t0}
	b := newWithClock(Config{Limit: initial, Strategy: s}, clk.now)
	var inService runningHeap
	var limits []int
	for clk.t.Sub(t0) < d {
		// Saturating demand: take every slot the bulkhead gives.
		for {
			p, ok := b.TryAcquire()
			if !ok {
				break
			}
			heap.Push(&inService, running{end: clk.t.Add(srv.latency(len(inService) + 1)), p: p})
		}
		next := heap.Pop(&inService).(running)
		clk.t = next.end
		next.p.Release()
		if clk.t.Sub(t0) >= settleAfter {
			limits = append(limits, b.Metrics().Limit)
		}
	}
	for inService.Len() > 0 {
		heap.Pop(&inService).(running).p.Release()
	}
	return limits
}

// TestAdaptiveLimitSettlesNearCapacity is the acceptance test: in
// front of a simulated service of capacity C whose latency rises past C in
// flight, each strategy brings the limit into [0.7·C, 1.3·C] and keeps it
// there, on an injected clock.
func TestAdaptiveLimitSettlesNearCapacity(t *testing.T) {
	const c = 100
	srv := server{c: c, base: 250 * time.Millisecond}
	tests := []struct {
		name     string
		strategy Strategy
		initial  int
		run      time.Duration
		settle   time.Duration
	}{
		{
			// Latency past 1.2·C exceeds the timeout and counts as a drop.
			name:     "AIMD from below",
			strategy: NewAIMD(AIMDConfig{Timeout: srv.base * 12 / 10}),
			initial:  10, run: 60 * time.Second, settle: 30 * time.Second,
		},
		{
			name:     "AIMD from above",
			strategy: NewAIMD(AIMDConfig{Timeout: srv.base * 12 / 10}),
			initial:  400, run: 60 * time.Second, settle: 30 * time.Second,
		},
		{
			// The default configuration: one-second windows, so the
			// climb from 10 takes about 100 windows.
			name:     "Gradient from below",
			strategy: NewGradient(GradientConfig{}),
			initial:  10, run: 300 * time.Second, settle: 150 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limits := simulate(tt.strategy, tt.initial, srv, tt.run, tt.settle)
			if len(limits) == 0 {
				t.Fatal("no samples after settling")
			}
			lo, hi, sum := limits[0], limits[0], 0
			for _, l := range limits {
				lo, hi, sum = min(lo, l), max(hi, l), sum+l
			}
			t.Logf("limit over the last %v: min %d, max %d, mean %.1f (C = %d)",
				tt.run-tt.settle, lo, hi, float64(sum)/float64(len(limits)), c)
			if lo < c*7/10 || hi > c*13/10 {
				t.Errorf("limit ranged over [%d, %d], want within [%d, %d]", lo, hi, c*7/10, c*13/10)
			}
		})
	}
}
