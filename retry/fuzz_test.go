package retry

import (
	"context"
	"math"
	"math/big"
	"testing"
	"time"
)

// checkDelay fails when d is negative or above limit.
func checkDelay(t *testing.T, what string, d, limit time.Duration) {
	t.Helper()
	if d < 0 || d > limit {
		t.Fatalf("%s: delay %v outside [0, %v]", what, d, limit)
	}
}

// bigMinDur returns min(x, limit) for a big.Int x as a Duration.
func bigMinDur(x *big.Int, limit time.Duration) time.Duration {
	if x.Cmp(big.NewInt(int64(limit))) >= 0 {
		return limit
	}
	return time.Duration(x.Int64())
}

func FuzzLinear(f *testing.F) {
	f.Add(int64(100*time.Millisecond), int64(50*time.Millisecond), int64(time.Second), 3)
	f.Add(int64(1), int64(1), int64(0), math.MaxInt)
	f.Add(int64(-1), int64(math.MaxInt64), int64(-1), 2)
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64), math.MinInt)
	f.Fuzz(func(t *testing.T, initial, step, maxD int64, retry int) {
		b := Linear(time.Duration(initial), time.Duration(step), time.Duration(maxD))
		limit := limitOf(time.Duration(maxD))
		d, _ := b.Delay(Step{Retry: retry})
		checkDelay(t, "linear", d, limit)
		// Exact: min(initial + (n-1)*step, limit) in unbounded integers.
		n := int64(max(retry, 1))
		want := new(big.Int).Mul(big.NewInt(n-1), big.NewInt(max(step, 0)))
		want.Add(want, big.NewInt(max(initial, 0)))
		if w := bigMinDur(want, limit); d != w {
			t.Fatalf("Linear(%d, %d, %d) retry %d = %d, want %d", initial, step, maxD, retry, d, w)
		}
	})
}

func FuzzExponential(f *testing.F) {
	f.Add(int64(100*time.Millisecond), int64(10*time.Second), 2.0, 5)
	f.Add(int64(1), int64(0), math.MaxFloat64, math.MaxInt)
	f.Add(int64(0), int64(-1), math.Inf(1), 2)
	f.Add(int64(-5), int64(5), math.NaN(), -3)
	f.Add(int64(math.MaxInt64), int64(0), 1.0000001, 1<<40)
	f.Fuzz(func(t *testing.T, initial, maxD int64, multiplier float64, retry int) {
		b := Exponential(time.Duration(initial), time.Duration(maxD), multiplier)
		limit := limitOf(time.Duration(maxD))
		d, _ := b.Delay(Step{Retry: retry})
		checkDelay(t, "exponential", d, limit)
		if retry < math.MaxInt {
			next, _ := b.Delay(Step{Retry: retry + 1})
			checkDelay(t, "exponential", next, limit)
			if next < d {
				t.Fatalf("Exponential(%d, %d, %v): retry %d waits %v, less than %v before", initial, maxD, multiplier, retry+1, next, d)
			}
		}
		if first, _ := b.Delay(Step{Retry: 1}); first != min(max(time.Duration(initial), 0), limit) {
			t.Fatalf("Exponential(%d, %d, %v): first delay %v, want min(initial, max)", initial, maxD, multiplier, first)
		}
	})
}

func FuzzFibonacci(f *testing.F) {
	f.Add(int64(10*time.Millisecond), int64(time.Second), 7)
	f.Add(int64(1), int64(0), 92)
	f.Add(int64(1), int64(0), 93)
	f.Add(int64(1), int64(0), math.MaxInt)
	f.Add(int64(-1), int64(-1), math.MinInt)
	f.Fuzz(func(t *testing.T, initial, maxD int64, retry int) {
		b := Fibonacci(time.Duration(initial), time.Duration(maxD))
		limit := limitOf(time.Duration(maxD))
		d, _ := b.Delay(Step{Retry: retry})
		checkDelay(t, "fibonacci", d, limit)
		n := max(retry, 1)
		if n > 200 {
			return // saturated long before; the exact check below is for small n
		}
		a, c := big.NewInt(1), big.NewInt(1)
		for i := 1; i < n; i++ {
			a, c = c, new(big.Int).Add(a, c)
		}
		want := new(big.Int).Mul(a, big.NewInt(max(initial, 0)))
		if w := bigMinDur(want, limit); d != w {
			t.Fatalf("Fibonacci(%d, %d) retry %d = %d, want %d", initial, maxD, retry, d, w)
		}
	})
}

func FuzzDecorrelatedJitter(f *testing.F) {
	f.Add(int64(100*time.Millisecond), int64(time.Second), int64(0), 0.5)
	f.Add(int64(1), int64(0), int64(math.MaxInt64), 0.9999999)
	f.Add(int64(-1), int64(-1), int64(-1), math.NaN())
	f.Add(int64(math.MaxInt64), int64(1), int64(5), math.Inf(1))
	f.Fuzz(func(t *testing.T, base, maxD, prev int64, r float64) {
		b := DecorrelatedJitter(time.Duration(base), time.Duration(maxD))
		limit := limitOf(time.Duration(maxD))
		d, _ := b.Delay(Step{Retry: 2, Prev: time.Duration(prev), Rand: r})
		checkDelay(t, "decorrelated", d, limit)
		lo := min(time.Duration(max(base, 0)), limit)
		if lo <= 1<<53 && d < lo { // above 2^53 float64 rounding may cost a few ns
			t.Fatalf("DecorrelatedJitter(%d, %d) after %d: %v below base", base, maxD, prev, d)
		}
		hi := 3 * float64(max(prev, base, 0))
		if float64(d) > hi*(1+1e-12) {
			t.Fatalf("DecorrelatedJitter(%d, %d) after %d: %v above 3*prev", base, maxD, prev, d)
		}
	})
}

func FuzzDecorrelatedJitterV2(f *testing.F) {
	f.Add(int64(time.Second), int64(0), 1, 0.5, 0.0)
	f.Add(int64(1), int64(0), math.MaxInt, 0.99, 1e308)
	f.Add(int64(-1), int64(-1), 1030, 0.0, math.NaN())
	f.Add(int64(math.MaxInt64), int64(1), math.MinInt, math.Inf(-1), math.Inf(1))
	f.Fuzz(func(t *testing.T, median, maxD int64, retry int, r, state float64) {
		b := DecorrelatedJitterV2(time.Duration(median), time.Duration(maxD))
		limit := limitOf(time.Duration(maxD))
		d, _ := b.Delay(Step{Retry: retry, State: state, Rand: r})
		checkDelay(t, "decorrelated v2", d, limit)
		// A well-formed sequence from any starting retry stays in bounds.
		prevState := 0.0
		for i := range 5 {
			n := retry + i
			if n < retry { // overflowed past MaxInt
				break
			}
			d, s := b.Delay(Step{Retry: n, State: prevState, Rand: r})
			checkDelay(t, "decorrelated v2 sequence", d, limit)
			prevState = s
		}
	})
}

func FuzzJitter(f *testing.F) {
	f.Add(int64(time.Second), 0.5, 0.2)
	f.Add(int64(math.MaxInt64), 0.9999999999, 1.0)
	f.Add(int64(-1), math.NaN(), math.NaN())
	f.Add(int64(3), math.Inf(1), math.Inf(-1))
	f.Fuzz(func(t *testing.T, di int64, r, factor float64) {
		d := time.Duration(di)
		pos := max(d, 0)
		if got := NoJitter(d, r); got != pos {
			t.Fatalf("NoJitter(%v) = %v", d, got)
		}
		full := FullJitter(d, r)
		checkDelay(t, "full jitter", full, pos)
		if d > 0 && d <= 1<<53 && full >= d {
			t.Fatalf("FullJitter(%v, %v) = %v, want below d", d, r, full)
		}
		equal := EqualJitter(d, r)
		checkDelay(t, "equal jitter", equal, pos)
		if equal < pos/2 {
			t.Fatalf("EqualJitter(%v, %v) = %v, below d/2", d, r, equal)
		}
		prop := ProportionalJitter(factor)(d, r)
		checkDelay(t, "proportional jitter", prop, maxDelay)
		fc := clampFloat(factor, 0, 1)
		if pos <= 1<<50 {
			lo, hi := float64(pos)*(1-fc)-1, float64(pos)*(1+fc)+1
			if float64(prop) < lo || float64(prop) > hi {
				t.Fatalf("ProportionalJitter(%v)(%v, %v) = %v, outside [%v, %v]", factor, d, r, prop, lo, hi)
			}
		}
	})
}

func FuzzMaxDurationFits(f *testing.F) {
	f.Add(int64(time.Second), int64(500*time.Millisecond), int64(499*time.Millisecond))
	f.Add(int64(1), int64(math.MaxInt64), int64(math.MaxInt64))
	f.Add(int64(math.MaxInt64), int64(-math.MaxInt64), int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, maxDur, elapsed, delay int64) {
		if maxDur <= 0 || delay < 0 || elapsed < -int64(100*365*24*time.Hour) || elapsed > int64(100*365*24*time.Hour) {
			return // the engine only sees positive limits, non-negative delays and representable clock readings
		}
		fc := newFakeClock()
		p := New(2, WithMaxDuration(time.Duration(maxDur)))
		p.clock = fc
		c := p.Start()
		c.start = fc.now().Add(-time.Duration(elapsed))
		got := c.fits(context.Background(), time.Duration(delay), time.Time{}, false)
		sum := new(big.Int).Add(big.NewInt(elapsed), big.NewInt(delay))
		if want := sum.Cmp(big.NewInt(maxDur)) < 0; got != want {
			t.Fatalf("fits(max %d, elapsed %d, delay %d) = %v, want %v", maxDur, elapsed, delay, got, want)
		}
		// NextAt's path, with the caller's reading of the same clock.
		if at := c.fits(context.Background(), time.Duration(delay), fc.now(), true); at != got {
			t.Fatalf("fits at the caller's time = %v, with the policy's clock %v", at, got)
		}
	})
}

func FuzzRatioBudget(f *testing.F) {
	f.Add(int64(10*time.Second), 10, 0.2, false, []byte{0, 1, 1, 0, 2, 1})
	f.Add(int64(0), -1, math.NaN(), false, []byte{1})
	f.Add(int64(math.MaxInt64), math.MaxInt, 1e-6, false, []byte{0, 0, 1})
	f.Add(int64(1), 1, 1000.0, false, []byte{2, 2, 2, 1, 0})
	f.Add(int64(10*time.Second), 1, 0.2, true, []byte{0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1})
	f.Add(int64(math.MaxInt64), math.MaxInt, 0.0, true, []byte{1, 0, 1})
	f.Fuzz(func(t *testing.T, ttl int64, minPerSec int, ratio float64, inside bool, ops []byte) {
		clock := newManualNow()
		b := newRatioBudget(time.Duration(ttl), minPerSec, ratio, inside, clock.now)
		// Without time passing, grants never exceed (reserve + deposits) / cost,
		// or max(reserve, deposits) / cost with the floor inside the ratio.
		var deposits, granted int64
		moved := false
		for _, op := range ops {
			switch op % 3 {
			case 0:
				b.Record(1, Success)
				deposits++
			case 1:
				if b.AllowRetry() {
					granted++
				}
			case 2:
				clock.advance(time.Duration(op) * time.Millisecond)
				moved = true
			}
			if b.Available() < 0 {
				t.Fatalf("Available = %d", b.Available())
			}
		}
		if !moved {
			bound := new(big.Int).Mul(big.NewInt(deposits), big.NewInt(b.deposit))
			if reserve := big.NewInt(b.reserve); !inside {
				bound.Add(bound, reserve)
			} else if bound.Cmp(reserve) < 0 {
				bound = reserve
			}
			bound.Div(bound, big.NewInt(b.withdrawal))
			if big.NewInt(granted).Cmp(bound) > 0 {
				t.Fatalf("granted %d retries, more than the bound %v", granted, bound)
			}
		}
	})
}

func FuzzTokenBucket(f *testing.F) {
	f.Add(10.0, 0.1, []byte{1, 1, 0, 2, 1})
	f.Add(math.NaN(), math.Inf(1), []byte{0})
	f.Add(1e300, 1e-300, []byte{1, 0, 0})
	f.Add(0.001, 1000.0, []byte{1, 1, 1})
	f.Fuzz(func(t *testing.T, maxTokens, ratio float64, ops []byte) {
		b := NewTokenBucket(maxTokens, ratio)
		capacity := b.Tokens()
		if capacity < 0 || capacity > 1000 {
			t.Fatalf("NewTokenBucket(%v, %v) starts with %v tokens", maxTokens, ratio, capacity)
		}
		for _, op := range ops {
			b.Record(1, Outcome(op%3))
			tk := b.Tokens()
			if tk < 0 || tk > capacity {
				t.Fatalf("%v tokens, outside [0, %v]", tk, capacity)
			}
			if b.AllowRetry() != (2*tk > capacity) {
				t.Fatalf("AllowRetry = %v with %v of %v tokens", b.AllowRetry(), tk, capacity)
			}
			if got, want := b.Available(), grantsUntilDenied(b); got != want {
				t.Fatalf("Available = %d with %v of %v tokens; failing until denied grants %d", got, tk, capacity, want)
			}
		}
	})
}

// grantsUntilDenied counts the retries a copy of b grants to a run of
// retryable failures, each asking for a retry, until one is denied.
func grantsUntilDenied(b *TokenBucket) int {
	c := &TokenBucket{max: b.max, ratio: b.ratio}
	c.tokens.Store(b.tokens.Load())
	n := 0
	for ; n <= maxTokens; n++ {
		c.Record(n+1, RetryableFailure)
		if !c.AllowRetry() {
			break
		}
	}
	return n
}

// FuzzRatioBudgetConfig builds budgets from arbitrary configurations and
// drives them with deposits, retries and clock steps, recorded at the
// caller's time or read from the clock. It checks the documented bound over
// every window of ten slices: the retries granted in it never exceed the
// floor plus the ratio of its calls (or the larger of the two), and that
// Validate accepts exactly the values the constructor keeps.
func FuzzRatioBudgetConfig(f *testing.F) {
	f.Add(int64(10*time.Second), 1, 0.2, true, []byte{0, 0, 0, 0, 0, 1, 1, 2, 1, 3, 0, 1})
	f.Add(int64(10*time.Second), 10, 0.2, false, []byte{1, 1, 1, 2, 3, 1})
	f.Add(int64(-1), -1, math.NaN(), true, []byte{0, 1})
	f.Add(int64(1), math.MaxInt, 1e-7, true, []byte{3, 1, 1})
	f.Add(int64(math.MaxInt64), math.MaxInt, math.Inf(1), false, []byte{0, 1, 2, 1})
	f.Fuzz(func(t *testing.T, ttl int64, minPerSec int, ratio float64, inside bool, ops []byte) {
		cfg := RatioBudgetConfig{TTL: time.Duration(ttl), MinRetriesPerSecond: minPerSec, Ratio: ratio, FloorInsideRatio: inside}
		valid := ttl >= 0 && minPerSec >= 0 && (ratio == 0 || ratio >= minRatio && ratio <= maxRatio)
		if err := cfg.Validate(); (err == nil) != valid {
			t.Fatalf("Validate(%+v) = %v, want valid %v", cfg, err, valid)
		}
		clock := newManualNow()
		b := newRatioBudgetFromConfig(cfg, clock.now)
		if b.width <= 0 || b.withdrawal < 1 || b.withdrawal > 1e9 || b.reserve < 0 || b.reserve > maxBudgetUnit || b.deposit != ratioScale {
			t.Fatalf("%+v: width %v, deposit %d, withdrawal %d, reserve %d", cfg, b.width, b.deposit, b.withdrawal, b.reserve)
		}
		if valid && ttl > 0 && b.width != max(time.Duration(ttl)/ratioSlots, 1) {
			t.Fatalf("%+v: slice %v, want a tenth of the TTL", cfg, b.width)
		}
		start := clock.now()
		deposits := map[int64]int64{} // per slice
		grants := map[int64]int64{}
		for _, op := range ops {
			idx := b.sliceIndex(clock.now())
			switch op % 4 {
			case 0:
				b.Record(1, Success)
				deposits[idx]++
			case 1:
				if !b.AllowRetry() {
					break
				}
				grants[idx]++
				var calls, granted int64
				for i := idx - ratioSlots + 1; i <= idx; i++ {
					calls += deposits[i]
					granted += grants[i]
				}
				earned := new(big.Int).Mul(big.NewInt(calls), big.NewInt(b.deposit))
				reserve := big.NewInt(b.reserve)
				bound := new(big.Int).Add(earned, reserve)
				if inside {
					bound = reserve
					if earned.Cmp(reserve) > 0 {
						bound = earned
					}
				}
				bound.Div(bound, big.NewInt(b.withdrawal))
				if big.NewInt(granted).Cmp(bound) > 0 {
					t.Fatalf("%+v: %d retries granted over a window of %d calls, above the bound %v", cfg, granted, calls, bound)
				}
			case 2:
				clock.advance(time.Duration(op) * b.width / 16)
			case 3:
				// A deposit at the caller's time, up to a window late.
				at := clock.now().Add(-time.Duration(op/4) * b.width / 6)
				if at.Before(start) {
					at = start
				}
				b.RecordAt(1, Success, at)
				if i := b.sliceIndex(at); i > idx-ratioSlots {
					if s := b.slots[i%ratioSlots].Load(); s != nil && s.idx == i {
						deposits[i]++
					}
				}
			}
			if b.Available() < 0 {
				t.Fatalf("Available = %d", b.Available())
			}
		}
	})
}
