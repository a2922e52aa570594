package bulkhead

import (
	"container/heap"
	"math"
	"math/rand/v2"
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
// the limit, and returns the limit at every release from settleAfter on,
// leaving out the releases during a Gradient's probes, whose low limit is
// deliberate.
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
		if g, ok := s.(*Gradient); ok && g.probing {
			continue
		}
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

// TestGradientDoesNotDrift runs the Gradient strategy with its defaults
// for twenty simulated minutes of saturating demand. Without probes, the
// long-term average follows the raised latency of the overload and the
// limit creeps up, to about 1.17 times the capacity after five minutes and
// 1.5 times after twenty. With them, the limit stays where it settled:
// near C + √C (the queue headroom at equilibrium, 1.105·C here).
func TestGradientDoesNotDrift(t *testing.T) {
	const c = 100
	srv := server{c: c, base: 250 * time.Millisecond}
	mean := func(noProbe bool) (at5, at20 float64) {
		g := NewGradient(GradientConfig{NoProbe: noProbe})
		g.rand = rand.New(rand.NewPCG(1, 2))
		limits := simulate(g, 10, srv, 20*time.Minute, 0)
		// simulate returns one limit per release outside probes; releases
		// come at a steady rate, so slices of it are stretches of time.
		minute := func(m int) float64 {
			n := len(limits) / 20
			sum := 0
			for _, l := range limits[(m-1)*n : m*n] {
				sum += l
			}
			return float64(sum) / float64(n) / c
		}
		return minute(5), minute(20)
	}
	drift5, drift20 := mean(true)
	at5, at20 := mean(false)
	t.Logf("mean limit / C in minute 5 and 20: without probes %.3f, %.3f; with probes %.3f, %.3f", drift5, drift20, at5, at20)
	if drift20 < 1.3 {
		t.Errorf("without probes the limit reached only %.3f·C: the simulation no longer shows the drift", drift20)
	}
	if at20 > 1.15 || at20 > at5*1.02 {
		t.Errorf("with probes the limit went from %.3f·C in minute 5 to %.3f·C in minute 20, want at most 1.15·C and no growth", at5, at20)
	}
	if at20 < 0.9 {
		t.Errorf("with probes the limit fell to %.3f·C", at20)
	}
}

func TestGradientProbe(t *testing.T) {
	g := NewGradient(GradientConfig{ProbeInterval: time.Minute, ProbeJitter: 0.1, ProbeSamples: 4, ProbeLimit: 2,
		QueueSize: 1, WindowSamples: 2})
	g.Init(50)
	now := t0
	// Learn a long-term average of 100ms.
	for range 20 {
		window(g, &now, 2, 100*time.Millisecond, 50, false)
	}
	if g.probing || now.Sub(t0) >= 54*time.Second {
		t.Fatalf("probing %v at %v, before the first probe is due", g.probing, now.Sub(t0))
	}
	before := int(g.limit)
	now = t0.Add(67 * time.Second) // past ProbeInterval plus its jitter
	if got := g.Update(Sample{RTT: 300 * time.Millisecond, InFlight: 50, Now: now}); got != 2 || !g.probing {
		t.Fatalf("limit %d (probing %v) when the probe is due, want the probe limit 2", got, g.probing)
	}
	// Executions admitted with more than 2 in flight do not count.
	for range 10 {
		g.Update(Sample{RTT: 300 * time.Millisecond, InFlight: 3, Now: now})
	}
	for i, rtt := range []time.Duration{10, 20, 30} {
		if got := g.Update(Sample{RTT: rtt * time.Millisecond, InFlight: 2, Now: now}); got != 2 {
			t.Fatalf("limit %d after %d probe samples, want 2", got, i+1)
		}
	}
	if got := g.Update(Sample{RTT: 40 * time.Millisecond, InFlight: 1, Now: now}); got != before || g.probing {
		t.Fatalf("limit %d (probing %v) after the probe, want %d restored", got, g.probing, before)
	}
	if g.long != float64(25*time.Millisecond) {
		t.Fatalf("long-term average %v after the probe, want the probed 25ms", time.Duration(g.long))
	}
	if d := g.nextProbe.Sub(now); d < 54*time.Second || d > 66*time.Second {
		t.Fatalf("next probe in %v, want a minute ±10%%", d)
	}
}

func TestGradientProbeGivesUp(t *testing.T) {
	g := NewGradient(GradientConfig{ProbeSamples: 5, Window: time.Second})
	g.Init(40)
	now := t0
	g.Update(Sample{RTT: time.Millisecond, InFlight: 40, Now: now})
	now = g.nextProbe
	g.long = 7
	// Long executions hold the slots: none is admitted at the probe limit.
	for range 9 {
		if got := g.Update(Sample{RTT: time.Millisecond, InFlight: 40, Now: now}); got != 40/DefaultProbeDivisor {
			t.Fatalf("limit %d during the probe, want %d", got, 40/DefaultProbeDivisor)
		}
		now = now.Add(time.Second)
	}
	if got := g.Update(Sample{RTT: time.Millisecond, InFlight: 40, Now: now.Add(time.Second)}); got != 40 || g.probing {
		t.Fatalf("limit %d (probing %v) after ten windows, want the probe over and 40 restored", got, g.probing)
	}
	if g.long != 7 {
		t.Fatalf("long-term average %v after a probe without samples, want it unchanged", g.long)
	}
}

func TestGradientNoProbe(t *testing.T) {
	g := NewGradient(GradientConfig{NoProbe: true, WindowSamples: 1})
	g.Init(20)
	now := t0
	for range 3600 {
		g.Update(Sample{RTT: time.Millisecond, InFlight: 20, Now: now})
		if g.probing {
			t.Fatal("probing with NoProbe")
		}
		now = now.Add(time.Second)
	}
}

func TestGradientProbeClockBackwards(t *testing.T) {
	g := NewGradient(GradientConfig{})
	g.Init(20)
	g.Update(Sample{RTT: time.Millisecond, InFlight: 20, Now: t0})
	back := t0.Add(-24 * time.Hour)
	g.Update(Sample{RTT: time.Millisecond, InFlight: 20, Now: back})
	if d := g.nextProbe.Sub(back); d > 2*DefaultProbeInterval {
		t.Fatalf("next probe %v after a clock that went back a day, want within two intervals", d)
	}
}

func TestGradientProbeConfig(t *testing.T) {
	tests := []struct {
		cfg  GradientConfig
		want string
	}{
		{GradientConfig{ProbeInterval: time.Minute, ProbeJitter: 0.5, ProbeLimit: 2, ProbeSamples: 9}, ""},
		{GradientConfig{NoProbe: true}, ""},
		{GradientConfig{ProbeInterval: time.Minute, ProbeJitter: 0.5, ProbeLimit: 2, ProbeSamples: 9, NoProbe: true},
			"ProbeInterval: 1m0s: set but NoProbe is true\nProbeJitter: 0.5: set but NoProbe is true\n" +
				"ProbeLimit: 2: set but NoProbe is true\nProbeSamples: 9: set but NoProbe is true"},
		{GradientConfig{ProbeInterval: -1}, "ProbeInterval: -1ns: must be at least 0"},
		{GradientConfig{ProbeInterval: time.Nanosecond}, "ProbeInterval: 1ns: must be 0 (the default) or at least 1s"},
		{GradientConfig{ProbeJitter: 1}, "ProbeJitter: 1: must be in (0, 1)"},
		{GradientConfig{ProbeLimit: -1}, "ProbeLimit: -1: must be at least 0"},
		{GradientConfig{ProbeSamples: -1}, "ProbeSamples: -1: must be at least 0"},
	}
	for _, tt := range tests {
		got := ""
		if err := tt.cfg.Validate(); err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%+v.Validate() = %q, want %q", tt.cfg, got, tt.want)
		}
	}
	g := NewGradient(GradientConfig{ProbeInterval: -1, ProbeJitter: math.NaN(), ProbeLimit: -1, ProbeSamples: -1})
	if g.probeInterval != DefaultProbeInterval || g.probeJitter != DefaultProbeJitter ||
		g.probeLimitFor(100) != 100/DefaultProbeDivisor || g.probeLimitFor(10) != DefaultProbeLimit ||
		g.probeSamples != DefaultProbeSamples || g.noProbe {
		t.Errorf("Gradient with invalid probe settings = %+v, want the defaults", g)
	}
	// The probe limit stays within [MinLimit, MaxLimit].
	if g := NewGradient(GradientConfig{MinLimit: 10, ProbeLimit: 2}); g.probeLimitFor(100) != 10 {
		t.Errorf("probe limit %d below MinLimit 10", g.probeLimitFor(100))
	}
	if g := NewGradient(GradientConfig{MinLimit: 30}); g.probeLimitFor(100) != 30 {
		t.Errorf("default probe limit %d below MinLimit 30", g.probeLimitFor(100))
	}
	if g := NewGradient(GradientConfig{MaxLimit: 2}); g.probeLimitFor(2) != 2 {
		t.Errorf("probe limit %d above MaxLimit 2", g.probeLimitFor(2))
	}
	if g := NewGradient(GradientConfig{ProbeLimit: 7}); g.probeLimitFor(1000) != 7 {
		t.Errorf("probe limit %d, want the configured 7 whatever the limit", g.probeLimitFor(1000))
	}
}
