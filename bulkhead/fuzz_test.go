package bulkhead

import (
	"encoding/binary"
	"math"
	"testing"
	"time"
)

// samples decodes fuzz input into a sequence of samples: each 10-byte
// record holds an RTT (8 bytes, any int64: negative and near-overflow
// values included), an in-flight count and flags that drop the sample or
// move the clock backwards. The clock moves by the RTT, saturating.
func samples(data []byte, start time.Time) []Sample {
	var out []Sample
	now := start
	for len(data) >= 10 {
		rtt := time.Duration(binary.LittleEndian.Uint64(data))
		inFlight := int(int8(data[8]))
		flags := data[9]
		data = data[10:]
		switch {
		case flags&2 != 0:
			now = now.Add(-time.Duration(flags) * time.Millisecond)
		case rtt > 0 && rtt < 1<<50:
			now = now.Add(rtt)
		}
		if flags&4 != 0 {
			inFlight *= 1 << 40
		}
		out = append(out, Sample{RTT: max(rtt, 0), InFlight: inFlight, Dropped: flags&1 != 0, Now: now})
	}
	return out
}

// seedSamples encodes samples as samples decodes them.
func seedSamples(recs ...[3]int64) []byte {
	var b []byte
	for _, r := range recs {
		b = binary.LittleEndian.AppendUint64(b, uint64(r[0]))
		b = append(b, byte(int8(r[1])), byte(r[2]))
	}
	return b
}

// FuzzAIMD feeds AIMD arbitrary configurations and samples: it must never
// panic and never return a limit outside its normalised [MinLimit,
// MaxLimit].
func FuzzAIMD(f *testing.F) {
	f.Add(0, 0, 0.0, int64(0), 10, seedSamples([3]int64{int64(time.Millisecond), 10, 0}, [3]int64{int64(time.Second), 10, 1}))
	f.Add(5, 3, 0.5, int64(time.Second), 100, seedSamples([3]int64{math.MaxInt64, 127, 0}, [3]int64{math.MinInt64, -128, 6}))
	f.Add(-1, -1, math.NaN(), int64(-1), -7, seedSamples([3]int64{1, 1, 2}, [3]int64{1, 1, 3}))
	f.Add(1, 1<<40, math.Inf(1), int64(math.MaxInt64), math.MaxInt, seedSamples([3]int64{0, 100, 4}))
	f.Fuzz(func(t *testing.T, minL, maxL int, ratio float64, timeout int64, initial int, data []byte) {
		cfg := AIMDConfig{MinLimit: minL, MaxLimit: maxL, BackoffRatio: ratio, Timeout: time.Duration(timeout)}
		lo, hi := limits(minL, maxL)
		a := NewAIMD(cfg)
		check := func(what string, l int) {
			if l < lo || l > hi {
				t.Fatalf("%s: limit %d outside [%d, %d] for %+v", what, l, lo, hi, cfg)
			}
		}
		check("Init", a.Init(initial))
		prev := int(a.limit)
		for _, s := range samples(data, t0) {
			l := a.Update(s)
			check("Update", l)
			if !s.Dropped && s.RTT <= a.timeout && l < prev {
				t.Fatalf("a success lowered the limit from %d to %d", prev, l)
			}
			prev = l
		}
		if err := cfg.Validate(); err == nil && minL > 0 && maxL >= minL && (a.minLimit != minL || a.maxLimit != maxL) {
			t.Fatalf("valid config %+v not used as given: [%d, %d]", cfg, a.minLimit, a.maxLimit)
		}
	})
}

// FuzzGradient feeds Gradient arbitrary configurations and samples: it must
// never panic, never return a limit outside its normalised [MinLimit,
// MaxLimit], and keep its averages finite.
func FuzzGradient(f *testing.F) {
	f.Add(0, 0, 0.0, 0.0, 0, int64(0), 0, 0, 20, seedSamples([3]int64{int64(time.Millisecond), 20, 0}))
	f.Add(2, 50, 1.0, 1.5, 3, int64(1), 1, 1, 10, seedSamples(
		[3]int64{int64(time.Millisecond), 10, 0}, [3]int64{int64(time.Second), 10, 0}, [3]int64{1, 10, 1}))
	f.Add(-3, -3, math.NaN(), math.Inf(1), -1, int64(-1), -1, -1, -1, seedSamples(
		[3]int64{math.MaxInt64, 127, 0}, [3]int64{math.MinInt64, -128, 2}, [3]int64{0, 0, 4}))
	f.Add(1, 1<<40, 1e-300, 1e300, 1<<40, int64(math.MaxInt64), 1<<40, 1<<40, math.MaxInt, seedSamples([3]int64{1, 1, 0}))
	f.Fuzz(func(t *testing.T, minL, maxL int, smoothing, tolerance float64, queue int, window int64,
		windowSamples, longWindow, initial int, data []byte) {
		cfg := GradientConfig{
			MinLimit: minL, MaxLimit: maxL, Smoothing: smoothing, Tolerance: tolerance, QueueSize: queue,
			Window: time.Duration(window), WindowSamples: windowSamples, LongWindow: longWindow,
		}
		lo, hi := limits(minL, maxL)
		g := NewGradient(cfg)
		if l := g.Init(initial); l < lo || l > hi {
			t.Fatalf("Init(%d) = %d outside [%d, %d]", initial, l, lo, hi)
		}
		for _, s := range samples(data, t0) {
			if l := g.Update(s); l < lo || l > hi {
				t.Fatalf("Update(%+v) = %d outside [%d, %d] for %+v", s, l, lo, hi, cfg)
			}
			if math.IsNaN(g.long) || math.IsInf(g.long, 0) || math.IsNaN(g.limit) {
				t.Fatalf("state went non-finite: long %v, limit %v", g.long, g.limit)
			}
		}
	})
}

// FuzzPermitSequence runs an arbitrary sequence of acquisitions and
// releases (double and stale releases included) against a bulkhead, with
// or without an adaptive strategy, on an injected clock, and checks the
// books after every step: in flight is the number of permits not yet
// released, never above the limit without a strategy, and TryAcquire
// succeeds exactly when a slot is free.
func FuzzPermitSequence(f *testing.F) {
	f.Add(uint8(2), false, []byte{0, 0, 0, 1, 1, 1, 0, 2})
	f.Add(uint8(0), false, []byte{0, 1})
	f.Add(uint8(5), true, []byte{0, 0, 0, 0, 0, 0, 3, 7, 11, 2, 0, 0, 5, 9})
	f.Fuzz(func(t *testing.T, limit uint8, adaptive bool, ops []byte) {
		clk := &fakeClock{t: t0}
		cfg := Config{Limit: int(limit)}
		if adaptive {
			cfg.Strategy = NewAIMD(AIMDConfig{MaxLimit: 8, Timeout: 3 * time.Millisecond})
		}
		b := newWithClock(cfg, clk.now)
		var permits []Permit
		live := map[int]bool{}
		for _, op := range ops {
			clk.advance(time.Duration(op) * time.Millisecond)
			m := b.Metrics()
			switch op % 4 {
			case 0:
				p, ok := b.TryAcquire()
				if ok != (m.InFlight < m.Limit) {
					t.Fatalf("TryAcquire ok = %v with %+v", ok, m)
				}
				if ok {
					live[len(permits)] = true
					permits = append(permits, p)
				}
			default:
				if len(permits) == 0 {
					continue
				}
				i := int(op/4) % len(permits)
				permits[i].ReleaseWith(Outcome(op % 3))
				delete(live, i)
			}
			m = b.Metrics()
			if m.InFlight != len(live) {
				t.Fatalf("InFlight = %d, want %d permits held", m.InFlight, len(live))
			}
			if !adaptive && m.InFlight > m.Limit {
				t.Fatalf("InFlight %d above the fixed limit %d", m.InFlight, m.Limit)
			}
			if adaptive && (m.Limit < 1 || m.Limit > 8) {
				t.Fatalf("adaptive limit %d outside [1, 8]", m.Limit)
			}
		}
		for _, p := range permits {
			p.Release()
		}
		if m := b.Metrics(); m.InFlight != 0 {
			t.Fatalf("InFlight = %d after releasing everything", m.InFlight)
		}
	})
}

// FuzzGradientProbe feeds a probing Gradient arbitrary probe settings and
// samples: it must never panic, never return a limit outside its
// normalised [MinLimit, MaxLimit], keep its averages finite and, between
// probes, never have the next one more than two intervals ahead.
func FuzzGradientProbe(f *testing.F) {
	f.Add(0, 0, int64(0), 0.0, 0, 0, 20, seedSamples([3]int64{int64(time.Minute), 20, 0}, [3]int64{int64(time.Millisecond), 2, 0}))
	f.Add(2, 9, int64(1), 0.99, 1, 1, 5, seedSamples([3]int64{1, 1, 0}, [3]int64{2, 1, 0}, [3]int64{3, 1, 2}))
	f.Add(-1, -1, int64(-1), math.NaN(), -1, -1, -1, seedSamples([3]int64{math.MaxInt64, 127, 0}, [3]int64{math.MinInt64, -128, 6}))
	f.Add(1, 1<<40, int64(math.MaxInt64), 1e-300, 1<<40, 1<<40, math.MaxInt, seedSamples([3]int64{1, 1, 4}))
	f.Fuzz(func(t *testing.T, minL, maxL int, interval int64, jitter float64, probeLimit, probeSamples, initial int, data []byte) {
		cfg := GradientConfig{MinLimit: minL, MaxLimit: maxL, WindowSamples: 1, Window: time.Nanosecond,
			ProbeInterval: time.Duration(interval), ProbeJitter: jitter, ProbeLimit: probeLimit, ProbeSamples: probeSamples}
		lo, hi := limits(minL, maxL)
		g := NewGradient(cfg)
		g.Init(initial)
		for _, s := range samples(data, t0) {
			if l := g.Update(s); l < lo || l > hi {
				t.Fatalf("Update(%+v) = %d outside [%d, %d] for %+v", s, l, lo, hi, cfg)
			}
			if math.IsNaN(g.long) || math.IsInf(g.long, 0) || math.IsNaN(g.limit) {
				t.Fatalf("state went non-finite: long %v, limit %v", g.long, g.limit)
			}
			if d := g.nextProbe.Sub(s.Now); !g.probing && !g.nextProbe.IsZero() && d > g.probeInterval && d-g.probeInterval > g.probeInterval && d < math.MaxInt64 {
				t.Fatalf("next probe %v ahead, interval %v", d, g.probeInterval)
			}
		}
	})
}

// FuzzCPU feeds the CPU strategy arbitrary configurations, CPU readings
// and samples: it must never panic and never return a limit outside
// [min(MinLimit, initial), initial] (initial below 1 counting as
// DefaultMaxLimit).
func FuzzCPU(f *testing.F) {
	f.Add(0.0, int64(0), 0, int64(0), 0, 100, []byte{200, 10, 250}, seedSamples([3]int64{int64(time.Millisecond), 1, 0}, [3]int64{int64(time.Second), 1, 0}))
	f.Add(0.5, int64(time.Second), 10, int64(time.Millisecond), 3, 10, []byte{255, 0, 255, 255}, seedSamples([3]int64{1, 1, 0}, [3]int64{int64(200 * time.Millisecond), 1, 1}))
	f.Add(math.NaN(), int64(-1), -1, int64(-1), -1, -1, []byte{}, seedSamples([3]int64{math.MaxInt64, 127, 0}, [3]int64{math.MinInt64, -128, 2}))
	f.Add(1e-300, int64(10), 11, int64(math.MaxInt64), 1<<40, math.MaxInt, []byte{128}, seedSamples([3]int64{0, 0, 4}))
	f.Fuzz(func(t *testing.T, threshold float64, window int64, buckets int, coolOff int64, minL, initial int, cpu []byte, data []byte) {
		i := 0
		usage := func() (float64, bool) {
			if len(cpu) == 0 {
				return 0, false
			}
			b := cpu[i%len(cpu)]
			i++
			switch b {
			case 0:
				return math.NaN(), true
			case 1:
				return math.Inf(1), true
			case 2:
				return -1, true
			}
			return float64(b) / 200, b%3 != 0
		}
		cfg := CPUConfig{Threshold: threshold, Window: time.Duration(window), Buckets: buckets,
			CoolOff: time.Duration(coolOff), MinLimit: minL, Usage: usage}
		s := NewCPU(cfg)
		hi := s.Init(initial)
		if want := initial; (initial >= 1 && hi != want) || (initial < 1 && hi != DefaultMaxLimit) {
			t.Fatalf("Init(%d) = %d", initial, hi)
		}
		lo := min(max(minL, 1), hi)
		for _, sm := range samples(data, t0) {
			if l := s.Update(sm); l < lo || l > hi {
				t.Fatalf("Update(%+v) = %d outside [%d, %d] for %+v", sm, l, lo, hi, cfg)
			}
		}
	})
}
