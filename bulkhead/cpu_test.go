package bulkhead

import (
	"container/heap"
	"math"
	"strings"
	"testing"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/internal/cpuusage"
)

// TestCPUSharedSampler checks the default wiring: the process's sampler
// starts with the first update, not before, and stops when the last
// strategy that used it is closed.
func TestCPUSharedSampler(t *testing.T) {
	sampler := cpuusage.Shared()
	defer sampler.Stop()
	s, other, unused := NewCPU(CPUConfig{}), NewCPU(CPUConfig{}), NewCPU(CPUConfig{})
	s.Init(10)
	other.Init(10)
	if sampler.Running() {
		t.Fatal("the shared sampler runs before any update")
	}
	if got := s.Update(Sample{RTT: time.Millisecond, Now: t0}); got != 10 {
		t.Fatalf("limit %d without statistics, want 10", got)
	}
	other.Update(Sample{RTT: time.Millisecond, Now: t0})
	if !sampler.Running() {
		t.Fatal("the shared sampler did not start")
	}
	_ = unused.Close() // never used the sampler: changes nothing
	_ = s.Close()
	_ = s.Close()
	if !sampler.Running() {
		t.Fatal("the shared sampler stopped while a strategy still uses it")
	}
	_ = other.Close()
	if sampler.Running() {
		t.Fatal("the shared sampler runs after its last user closed")
	}
	// A closed strategy has no CPU signal and does not start the sampler.
	s.Update(Sample{RTT: time.Millisecond, Now: t0.Add(time.Hour)})
	if sampler.Running() {
		t.Fatal("a closed strategy started the sampler")
	}
}

// TestCPUCloseLeavesNoGoroutine is what a user's test does: build a
// bulkhead on the default CPU signal, run a call, close the strategy; the
// package's goleak check then finds nothing.
func TestCPUCloseLeavesNoGoroutine(t *testing.T) {
	cpu := NewCPU(CPUConfig{})
	b := NewFromConfig(Config{Limit: 10, Strategy: cpu})
	p, err := b.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	p.Release()
	if err := cpu.Close(); err != nil {
		t.Fatal(err)
	}
	if cpuusage.Shared().Running() {
		t.Fatal("the sampler runs after Close")
	}
}

func TestCPUConfigInForce(t *testing.T) {
	got := NewCPU(CPUConfig{Threshold: 0.9, Window: 2 * time.Second, Buckets: 20, MinLimit: 4}).Config()
	want := CPUConfig{Threshold: 0.9, Window: 2 * time.Second, Buckets: 20, CoolOff: DefaultCPUCoolOff, MinLimit: 4}
	if got.Usage != nil || got.Threshold != want.Threshold || got.Window != want.Window || got.Buckets != want.Buckets || got.CoolOff != want.CoolOff || got.MinLimit != want.MinLimit {
		t.Fatalf("Config() = %+v, want %+v", got, want)
	}
	g := coldGauge()
	if c := NewCPU(CPUConfig{Usage: g.read}).Config(); c.Usage == nil || c.Window != DefaultCPUWindow || c.Buckets != DefaultCPUBuckets || c.Threshold != DefaultCPUThreshold {
		t.Fatalf("Config() = %+v, want the defaults and the custom Usage", c)
	}
}

// cpuGauge is an injected CPU signal.
type cpuGauge struct {
	usage float64
	known bool
	reads int
}

func (g *cpuGauge) read() (float64, bool) {
	g.reads++
	return g.usage, g.known
}

func hotGauge() *cpuGauge  { return &cpuGauge{usage: 0.95, known: true} }
func coldGauge() *cpuGauge { return &cpuGauge{usage: 0.3, known: true} }

// fill feeds s n executions of latency rtt completing at *now, then moves
// *now to the start of the next bucket.
func fill(s *CPU, now *time.Time, n int, rtt time.Duration) int {
	var limit int
	for range n {
		limit = s.Update(Sample{RTT: rtt, InFlight: 1, Now: *now})
	}
	*now = now.Add(s.bucket)
	return limit
}

func TestCPUBBRRule(t *testing.T) {
	g := hotGauge()
	s := NewCPU(CPUConfig{Window: time.Second, Buckets: 10, Usage: g.read})
	if got := s.Init(500); got != 500 {
		t.Fatalf("Init(500) = %d, want 500", got)
	}
	now := t0
	// Before a bucket completes there is nothing to scale: no limit.
	if got := fill(s, &now, 20, 50*time.Millisecond); got != 500 {
		t.Fatalf("limit %d before any completed bucket, want 500", got)
	}
	fill(s, &now, 30, 80*time.Millisecond)
	// Buckets of 100ms: maxPass 30, minRT 50ms, so 30 × 50 / 100 = 15.
	if got := s.Update(Sample{RTT: time.Second, Now: now}); got != 15 {
		t.Fatalf("limit = %d, want maxPass 30 × minRT 50ms / 100ms = 15", got)
	}
	// The bucket being filled does not count, however good it looks.
	for range 100 {
		s.Update(Sample{RTT: time.Millisecond, Now: now})
	}
	if got := s.Update(Sample{RTT: time.Millisecond, Now: now}); got != 15 {
		t.Fatalf("limit = %d from the current bucket, want 15", got)
	}
	now = now.Add(s.bucket)
	// Now it counts: 102 executions averaging 1101ms / 102, and
	// 102 × 10.79ms / 100ms = 11.
	if got := s.Update(Sample{RTT: time.Millisecond, Now: now}); got != 11 {
		t.Fatalf("limit = %d after the fast bucket completed, want 11", got)
	}
}

func TestCPUNoLimitUnlessHot(t *testing.T) {
	tests := []struct {
		name  string
		gauge *cpuGauge
	}{
		{"below the threshold", coldGauge()},
		{"at the threshold", &cpuGauge{usage: DefaultCPUThreshold, known: true}},
		{"unknown", &cpuGauge{usage: 1, known: false}},
		{"NaN", &cpuGauge{usage: math.NaN(), known: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewCPU(CPUConfig{Usage: tt.gauge.read})
			s.Init(300)
			now := t0
			for range 100 {
				if got := fill(s, &now, 50, 10*time.Millisecond); got != 300 {
					t.Fatalf("limit %d, want the bulkhead's own 300", got)
				}
			}
		})
	}
}

func TestCPUCoolOff(t *testing.T) {
	g := hotGauge()
	s := NewCPU(CPUConfig{Window: time.Second, Buckets: 10, CoolOff: 500 * time.Millisecond, Usage: g.read})
	s.Init(100)
	now := t0
	fill(s, &now, 10, 100*time.Millisecond)
	if got := s.Update(Sample{RTT: 100 * time.Millisecond, Now: now}); got != 10 {
		t.Fatalf("limit = %d while hot, want 10", got)
	}
	g.usage = 0.1
	// The usage is read when a bucket completes: the last sample of this
	// bucket is the last hot one, and the cool-off runs from it.
	now = now.Add(s.bucket - time.Millisecond)
	s.Update(Sample{RTT: 100 * time.Millisecond, Now: now})
	lastHot := now
	for now.Sub(lastHot) < 500*time.Millisecond-10*time.Millisecond {
		now = now.Add(10 * time.Millisecond)
		if got := s.Update(Sample{RTT: 100 * time.Millisecond, Now: now}); got != 10 {
			t.Fatalf("limit = %d %v after the CPU cooled, want 10 until the cool-off ends", got, now.Sub(lastHot))
		}
	}
	now = lastHot.Add(500 * time.Millisecond)
	if got := s.Update(Sample{RTT: 100 * time.Millisecond, Now: now}); got != 100 {
		t.Fatalf("limit = %d after the cool-off, want 100", got)
	}
	// Hot again: the limit is back at once.
	g.usage = 0.99
	now = now.Add(s.bucket)
	if got := s.Update(Sample{RTT: 100 * time.Millisecond, Now: now}); got == 100 {
		t.Fatal("no limit after the CPU got hot again")
	}
}

func TestCPUClamps(t *testing.T) {
	tests := []struct {
		name    string
		cfg     CPUConfig
		initial int
		pass    int
		rtt     time.Duration
		want    int
	}{
		{"at least MinLimit", CPUConfig{MinLimit: 7}, 100, 1, time.Millisecond, 7},
		{"at least 1", CPUConfig{}, 100, 1, time.Nanosecond, 1},
		{"MinLimit above the bulkhead's limit", CPUConfig{MinLimit: 70}, 20, 1, time.Millisecond, 20},
		{"at most the bulkhead's limit", CPUConfig{}, 20, 100, time.Second, 20},
		{"zero latency counts as 1ns", CPUConfig{}, 20, 100, 0, 1},
		{"initial below 1 is the default maximum", CPUConfig{}, 0, 10_000, time.Second, DefaultMaxLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Usage = hotGauge().read
			s := NewCPU(tt.cfg)
			s.Init(tt.initial)
			now := t0
			fill(s, &now, tt.pass, tt.rtt)
			if got := s.Update(Sample{RTT: tt.rtt, Now: now}); got != tt.want {
				t.Errorf("limit = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestCPUDropsDoNotCount(t *testing.T) {
	s := NewCPU(CPUConfig{Usage: hotGauge().read})
	s.Init(100)
	now := t0
	for range 50 {
		s.Update(Sample{RTT: time.Nanosecond, Dropped: true, Now: now})
	}
	now = now.Add(s.bucket)
	if got := s.Update(Sample{RTT: time.Second, Now: now}); got != 100 {
		t.Fatalf("limit = %d from dropped executions only, want no limit", got)
	}
}

func TestCPUWindowExpires(t *testing.T) {
	s := NewCPU(CPUConfig{Window: time.Second, Buckets: 10, Usage: hotGauge().read})
	s.Init(100)
	now := t0
	fill(s, &now, 10, 100*time.Millisecond)
	if got := s.Update(Sample{Dropped: true, Now: now}); got != 10 {
		t.Fatalf("limit = %d, want 10", got)
	}
	// A window later every bucket is gone: nothing to scale.
	now = now.Add(2 * time.Second)
	if got := s.Update(Sample{Dropped: true, Now: now}); got != 100 {
		t.Fatalf("limit = %d after the window expired, want no limit", got)
	}
}

func TestCPUHostileClock(t *testing.T) {
	g := hotGauge()
	s := NewCPU(CPUConfig{Window: time.Second, Buckets: 10, Usage: g.read})
	s.Init(100)
	now := t0
	fill(s, &now, 10, 100*time.Millisecond)
	for _, d := range []time.Duration{-time.Hour, time.Duration(math.MaxInt64), math.MinInt64, 0, time.Hour} {
		at := now.Add(d)
		if got := s.Update(Sample{RTT: 100 * time.Millisecond, Now: at}); got < 1 || got > 100 {
			t.Fatalf("limit %d at a clock moved by %v", got, d)
		}
	}
	// Back from a jump forward, the ring moves on again: hot traffic at
	// the real time brings the limit down to what it shows.
	g.usage = 0.95
	var limit int
	for range 12 {
		limit = fill(s, &now, 10, 100*time.Millisecond)
	}
	if limit != 10 {
		t.Fatalf("limit %d under hot traffic after the clock came back, want 10 (10 per bucket × 100ms / 100ms)", limit)
	}
	// The cool-off never outlasts CoolOff, whatever the clock did.
	g.usage = 0
	now = now.Add(2 * time.Hour)
	now = now.Add(s.bucket)
	s.Update(Sample{RTT: time.Millisecond, Now: now})
	if got := s.Update(Sample{RTT: time.Millisecond, Now: now.Add(DefaultCPUCoolOff)}); got != 100 {
		t.Fatalf("limit = %d a cool-off after the CPU cooled, want 100", got)
	}
}

func TestCPUReadsOncePerBucket(t *testing.T) {
	g := coldGauge()
	s := NewCPU(CPUConfig{Window: time.Second, Buckets: 10, Usage: g.read})
	s.Init(100)
	now := t0
	for range 5 {
		fill(s, &now, 1000, time.Millisecond)
	}
	s.Update(Sample{Now: now})
	if g.reads != 6 {
		t.Errorf("usage read %d times, want 6: on the first sample, then once per completed bucket", g.reads)
	}
}

func TestCPUConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  CPUConfig
		want string
	}{
		{CPUConfig{}, ""},
		{CPUConfig{Threshold: 0.9, Window: 10 * time.Second, Buckets: 100, CoolOff: 2 * time.Second, MinLimit: 3}, ""},
		{CPUConfig{Threshold: 1}, "Threshold: 1: must be in (0, 1)"},
		{CPUConfig{Threshold: math.NaN()}, "Threshold: NaN: must be in (0, 1)"},
		{CPUConfig{Threshold: -0.5}, "Threshold: -0.5: must be in (0, 1)"},
		{CPUConfig{Window: -1}, "Window: -1ns: must be at least 0"},
		{CPUConfig{Buckets: -1}, "Buckets: -1: must be at least 0"},
		{CPUConfig{Window: 10, Buckets: 11}, "Buckets: 11: must not exceed Window in nanoseconds"},
		{CPUConfig{CoolOff: -time.Second}, "CoolOff: -1s: must be at least 0"},
		{CPUConfig{MinLimit: -2}, "MinLimit: -2: must be at least 0"},
		{CPUConfig{Threshold: 2, Window: -1, MinLimit: -1},
			"Threshold: 2: must be in (0, 1)\nWindow: -1ns: must be at least 0\nMinLimit: -1: must be at least 0"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%+v.Validate() = %q, want %q", tt.cfg, got, tt.want)
		}
		if n := len(resilience.FieldErrors(err)); n != strings.Count(tt.want, "\n")+min(len(tt.want), 1) {
			t.Errorf("%d FieldErrors in %q", n, got)
		}
	}
}

func TestCPUInvalidConfigTakesDefaults(t *testing.T) {
	s := NewCPU(CPUConfig{Threshold: 7, Window: -1, Buckets: -1, CoolOff: -1, MinLimit: -1})
	if s.threshold != DefaultCPUThreshold || s.bucket != DefaultCPUWindow/DefaultCPUBuckets ||
		len(s.ring) != DefaultCPUBuckets || s.coolOff != DefaultCPUCoolOff || s.minLimit != DefaultMinLimit {
		t.Errorf("CPU with invalid config = %+v, want the defaults", s)
	}
	s = NewCPU(CPUConfig{Window: 10, Buckets: 11})
	if s.bucket != DefaultCPUWindow/DefaultCPUBuckets {
		t.Errorf("bucket = %v for a window shorter than its buckets, want the default", s.bucket)
	}
}

// TestCPUSimulatedOverload runs a bulkhead with a CPU strategy in front of
// a simulated CPU-bound service of capacity c (its CPU usage is the share
// of c in service; past c, calls queue for the CPU and slow down) under a
// demand that ramps up to eight times c. Without the strategy the whole
// demand would get in; with it, the limit settles near c once the CPU is
// busy, and comes back to the bulkhead's own limit when demand falls.
func TestCPUSimulatedOverload(t *testing.T) {
	const c = 50
	srv := server{c: c, base: 20 * time.Millisecond}
	clk := &fakeClock{t: t0}
	var inService runningHeap
	cpu := func() (float64, bool) { return float64(inService.Len()) / c, true }
	b := newWithClock(Config{Limit: 8 * c, Strategy: NewCPU(CPUConfig{Usage: cpu})}, clk.now)

	demand := func(at time.Duration) int {
		switch {
		case at < 10*time.Second:
			return int(8 * c * at / (10 * time.Second)) // the ramp
		case at < 40*time.Second:
			return 8 * c
		}
		return c / 2
	}
	const tick = 5 * time.Millisecond
	var settled []int
	var afterDemandFell int
	for clk.t.Sub(t0) < 50*time.Second {
		at := clk.t.Sub(t0)
		for inService.Len() < demand(at) {
			p, ok := b.TryAcquire()
			if !ok {
				break
			}
			heap.Push(&inService, running{end: clk.t.Add(srv.latency(inService.Len() + 1)), p: p})
		}
		next := clk.t.Add(tick)
		for inService.Len() > 0 && !inService[0].end.After(next) {
			r := heap.Pop(&inService).(running)
			clk.t = r.end
			r.p.Release()
		}
		clk.t = next
		switch at := clk.t.Sub(t0); {
		case at >= 20*time.Second && at < 40*time.Second:
			settled = append(settled, b.Metrics().Limit)
		case at >= 45*time.Second:
			afterDemandFell = b.Metrics().Limit
		}
	}
	for inService.Len() > 0 {
		heap.Pop(&inService).(running).p.Release()
	}
	lo, hi, sum := settled[0], settled[0], 0
	for _, l := range settled {
		lo, hi, sum = min(lo, l), max(hi, l), sum+l
	}
	mean := float64(sum) / float64(len(settled))
	t.Logf("limit under 8x demand: min %d, max %d, mean %.1f (c = %d); after demand fell: %d", lo, hi, mean, c, afterDemandFell)
	if mean < 0.7*c || mean > 1.3*c {
		t.Errorf("mean limit %.1f under overload, want within [%v, %v]", mean, 0.7*c, 1.3*c)
	}
	if afterDemandFell != 8*c {
		t.Errorf("limit %d after demand fell below capacity, want the bulkhead's own %d", afterDemandFell, 8*c)
	}
}

func BenchmarkCPUStrategy(b *testing.B) {
	g := hotGauge()
	s := NewCPU(CPUConfig{Usage: g.read})
	s.Init(1000)
	now := t0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		// 100 executions per 100ms bucket: a bucket completes every 100
		// updates, so the cost includes the per-bucket work.
		now = now.Add(time.Millisecond)
		s.Update(Sample{RTT: 20 * time.Millisecond, InFlight: 10, Now: now, Dropped: i%50 == 0})
	}
}
