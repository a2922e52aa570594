package ratelimit

import (
	"encoding/binary"
	"math"
	"testing"
	"time"
)

// FuzzLimiter drives a limiter of any rate and burst with a sequence of
// requests of any size at times that jump forward and back, and checks
// that nothing panics and that:
//
//   - at one instant, the permits granted never exceed the burst;
//   - RetryAfter is never negative, and is exact: a refused request that
//     could be granted later is granted after RetryAfter (checked on a
//     copy of the limiter, so that the sequence goes on unchanged);
//   - Tokens never exceeds the burst.
func FuzzLimiter(f *testing.F) {
	f.Add(10.0, 5, []byte{0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1})
	f.Add(1e-12, 0, []byte{1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Add(1e9, 1, []byte{255, 255, 255, 255, 255, 255, 255, 127, 9})
	f.Add(7.5e8, math.MaxInt, []byte{0x80, 0, 0, 0, 0, 0, 0, 0x80, 0xff})
	f.Add(3.0, -4, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2})
	f.Add(math.NaN(), 3, []byte{5, 5})
	f.Add(0.001, 2, []byte{0x10, 0, 0, 0, 0, 0, 0, 0, 2, 0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, rate float64, burst int, ops []byte) {
		c := &fakeClock{}
		l := newLimiter(Config{Rate: rate, Burst: burst}, c.now)
		if err := (Config{Rate: rate, Burst: burst}).Validate(); err == nil && (l.Rate() != rate && rate != 0) {
			t.Fatalf("valid rate %v became %v", rate, l.Rate())
		}
		instant, grantedAtInstant := time.Duration(-1), 0
		for len(ops) >= 9 {
			step := int64(binary.LittleEndian.Uint64(ops))
			n := int(ops[8])
			if n >= 200 { // now and then a huge request
				n = math.MaxInt >> (n - 200)
			}
			ops = ops[9:]
			// Steps are signed: the clock may go back. Keep it in range
			// of the int64 of the fake clock.
			now := time.Duration(c.t.Load())
			if d := time.Duration(step); (d > 0 && now > math.MaxInt64-d) || (d < 0 && now < math.MinInt64-d) {
				c.set(0)
			} else {
				c.advance(d)
			}
			if t := time.Duration(c.t.Load()); t != instant {
				instant, grantedAtInstant = t, 0
			}

			if tok := l.Tokens(); tok > float64(l.Burst())+1e-9 && !math.IsInf(tok, 1) {
				t.Fatalf("Tokens() = %v above the burst %d", tok, l.Burst())
			}
			before := l.tat.Load()
			ok, retry := l.decide(l.clk.now(), n)
			if retry < 0 {
				t.Fatalf("RetryAfter %v is negative", retry)
			}
			if ok {
				if !l.p.unlimited && n > 0 {
					grantedAtInstant += n
					if grantedAtInstant > l.Burst() {
						t.Fatalf("granted %d permits at one instant, burst %d", grantedAtInstant, l.Burst())
					}
				}
				continue
			}
			if l.tat.Load() != before {
				t.Fatal("a refusal changed the limiter")
			}
			if retry == 0 {
				continue // never, or it cannot say
			}
			// Exactness, on a copy at now+RetryAfter (if in range).
			at := l.clk.now() + toUnits(retry)
			if at >= math.MaxInt64>>1 {
				continue
			}
			cp := &Limiter{p: l.p, clk: l.clk}
			cp.tat.Store(before)
			if o, _, _ := cp.p.take(&cp.tat, at, n, 0); o != granted {
				t.Fatalf("refused %d permits with RetryAfter %v, still refused then", n, retry)
			}
			if retry > time.Nanosecond {
				cp.tat.Store(before)
				if o, _, _ := cp.p.take(&cp.tat, at-2*unitsPerNs, n, 0); o == granted {
					t.Fatalf("RetryAfter %v for %d permits is too long: granted 2ns earlier", retry, n)
				}
			}
		}
	})
}

// FuzzParams checks the conversion of any rate and burst into the
// limiter's arithmetic: no panic, an interval of at least one unit, a
// limit that is exactly burst intervals, and agreement with Validate.
func FuzzParams(f *testing.F) {
	for _, r := range []float64{0, 1e-300, 8.6e-10, 8.7e-10, 0.5, 1, 1e6, 1.6e8, 1e9, 1e9 + 1, math.Inf(1), -1} {
		f.Add(r, 0)
		f.Add(r, math.MaxInt)
	}
	f.Fuzz(func(t *testing.T, rate float64, burst int) {
		p := newParams(rate, burst)
		valid := (Config{Rate: rate, Burst: burst}).Validate() == nil
		if valid != (rate >= 0 && rate <= MaxRate && burst >= 0) {
			t.Fatalf("Validate(%v, %d) valid=%v", rate, burst, valid)
		}
		if p.unlimited {
			if rate > 0 && rate <= MaxRate {
				t.Fatalf("rate %v made an unlimited limiter", rate)
			}
			return
		}
		if p.interval < 1 || p.burst < 1 || p.limit != int64(p.burst)*p.interval || p.limit < p.interval {
			t.Fatalf("rate %v burst %d: %+v", rate, burst, p)
		}
		if burst > 0 && p.burst > burst {
			t.Fatalf("burst %d grew to %d", burst, p.burst)
		}
		if r := p.rate; r > 1e-6 && r <= 1.6e8 {
			exact := unitsPerSec / r
			if math.Abs(float64(p.interval)-exact) > 0.01*exact {
				t.Fatalf("rate %v: interval %d units, exact %v", r, p.interval, exact)
			}
		}
	})
}
