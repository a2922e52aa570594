package bulkhead

import (
	"container/heap"
	"math/rand/v2"
	"testing"
	"time"
)

// probeCost drives a Gradient with the given probe settings in front of
// srv under saturating demand for d of simulated time, as simulate does,
// and returns the executions completed, the share of the time spent
// probing, and the mean limit outside probes over the last tenth of d,
// relative to srv.c.
func probeCost(cfg GradientConfig, srv server, d time.Duration) (completed int, probing, lastLimit float64) {
	g := NewGradient(cfg)
	g.rand = rand.New(rand.NewPCG(1, 2))
	clk := &fakeClock{t: t0}
	b := newWithClock(Config{Limit: srv.c / 2, Strategy: g}, clk.now)
	var inService runningHeap
	var probeTime time.Duration
	var sum, n float64
	for clk.t.Sub(t0) < d {
		for {
			p, ok := b.TryAcquire()
			if !ok {
				break
			}
			heap.Push(&inService, running{end: clk.t.Add(srv.latency(len(inService) + 1)), p: p})
		}
		next := heap.Pop(&inService).(running)
		wasProbing := g.probing
		prev := clk.t
		clk.t = next.end
		if wasProbing {
			probeTime += clk.t.Sub(prev)
		}
		next.p.Release()
		completed++
		if !g.probing && clk.t.Sub(t0) >= d*9/10 {
			sum += float64(b.Metrics().Limit)
			n++
		}
	}
	for inService.Len() > 0 {
		heap.Pop(&inService).(running).p.Release()
	}
	return completed, float64(probeTime) / float64(d), sum / n / float64(srv.c)
}

// TestGradientProbeCost bounds what the probes cost with the defaults, in
// front of a saturated service: the executions lost to the probes' low
// limit stay under 2%, and so does the time spent probing but at a small
// capacity and a long latency, where it follows the formula of the
// Gradient documentation; meanwhile the probes still hold the limit where
// it settled, near C + √C.
func TestGradientProbeCost(t *testing.T) {
	for _, tc := range []struct {
		srv        server
		maxProbing float64
		maxLimit   float64 // relative to C
	}{
		{server{c: 100, base: 250 * time.Millisecond}, 0.02, 1.15},
		// (1 + 20/3) × 250ms a minute: 3.2%, less the jitter's luck.
		{server{c: 10, base: 250 * time.Millisecond}, 0.035, 1.45},
	} {
		srv := tc.srv
		const d = 10 * time.Minute
		without, _, drift := probeCost(GradientConfig{NoProbe: true}, srv, d)
		with, probing, held := probeCost(GradientConfig{}, srv, d)
		lost := 1 - float64(with)/float64(without)
		t.Logf("C %d, latency %v: probing %.2f%% of the time, %.2f%% fewer completions; limit/C over the last minute %.3f (%.3f without probes)",
			srv.c, srv.base, 100*probing, 100*lost, held, drift)
		if probing > tc.maxProbing || lost > 0.02 {
			t.Errorf("C %d: probing %.2f%% of the time, %.2f%% fewer completions, want under %.1f%% and 2%%", srv.c, 100*probing, 100*lost, 100*tc.maxProbing)
		}
		if probing == 0 {
			t.Errorf("C %d: no probe in %v", srv.c, d)
		}
		if held > tc.maxLimit || held > drift*0.9 {
			t.Errorf("C %d: the limit drifted to %.3f·C with probes (%.3f·C without)", srv.c, held, drift)
		}
	}
}

func TestGradientConfigInForce(t *testing.T) {
	got := NewGradient(GradientConfig{MaxLimit: 50, Window: 2 * time.Second, ProbeInterval: 30 * time.Second}).Config()
	want := GradientConfig{MinLimit: DefaultMinLimit, MaxLimit: 50, Smoothing: 0.2, Tolerance: 1, Window: 2 * time.Second,
		WindowSamples: 10, LongWindow: 600, ProbeInterval: 30 * time.Second, ProbeJitter: DefaultProbeJitter, ProbeSamples: DefaultProbeSamples}
	if got != want {
		t.Fatalf("Config() = %+v, want %+v", got, want)
	}
	if c := NewGradient(GradientConfig{NoProbe: true, ProbeSamples: 5}).Config(); !c.NoProbe || c.ProbeSamples != 0 || c.Validate() != nil {
		t.Fatalf("Config() = %+v with NoProbe, want no probe fields", c)
	}
}
