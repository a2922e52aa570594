package retry

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// sequence runs b for retries 1..n, threading Prev and State as the engine
// does, with every random number r.
func sequence(b Backoff, n int, r float64) []time.Duration {
	var out []time.Duration
	var prev time.Duration
	var state float64
	for i := 1; i <= n; i++ {
		d, s := b.Delay(Step{Retry: i, Prev: prev, State: state, Rand: r})
		out = append(out, d)
		prev, state = d, s
	}
	return out
}

func ms(v ...float64) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x * float64(time.Millisecond))
	}
	return out
}

func TestBackoffSequences(t *testing.T) {
	tests := []struct {
		name string
		b    Backoff
		r    float64
		want []time.Duration
	}{
		{"constant", Constant(50 * time.Millisecond), 0.5, ms(50, 50, 50, 50)},
		{"constant negative is zero", Constant(-time.Second), 0.5, ms(0, 0)},
		{"linear", Linear(100*time.Millisecond, 50*time.Millisecond, 300*time.Millisecond), 0.5, ms(100, 150, 200, 250, 300, 300)},
		{"linear zero step", Linear(100*time.Millisecond, 0, time.Second), 0.5, ms(100, 100, 100)},
		{"linear negative step is zero", Linear(100*time.Millisecond, -time.Second, time.Second), 0.5, ms(100, 100)},
		{"linear initial above max", Linear(2*time.Second, time.Second, time.Second), 0.5, ms(1000, 1000)},
		{"exponential default", Exponential(100*time.Millisecond, 10*time.Second, 2), 0.5,
			ms(100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000)},
		{"exponential multiplier 1.5", Exponential(100*time.Millisecond, time.Second, 1.5), 0.5, ms(100, 150, 225, 337.5, 506.25, 759.375, 1000)},
		{"exponential multiplier below 1 is constant", Exponential(100*time.Millisecond, time.Second, 0.5), 0.5, ms(100, 100, 100)},
		{"exponential NaN multiplier is constant", Exponential(100*time.Millisecond, time.Second, math.NaN()), 0.5, ms(100, 100)},
		{"exponential infinite multiplier", Exponential(100*time.Millisecond, time.Second, math.Inf(1)), 0.5, ms(100, 1000, 1000)},
		{"exponential zero initial", Exponential(0, time.Second, math.Inf(1)), 0.5, ms(0, 0, 0)},
		{"exponential negative initial", Exponential(-time.Second, time.Second, 2), 0.5, ms(0, 0)},
		{"exponential initial above max", Exponential(2*time.Second, time.Second, 2), 0.5, ms(1000, 1000)},
		{"fibonacci", Fibonacci(10*time.Millisecond, time.Second), 0.5,
			ms(10, 10, 20, 30, 50, 80, 130, 210, 340, 550, 890, 1000, 1000)},
		{"fibonacci initial above max", Fibonacci(2*time.Second, time.Second), 0.5, ms(1000, 1000)},
		{"fibonacci zero initial", Fibonacci(0, time.Second), 0.5, ms(0, 0)},
		// AWS: min(cap, base + r*(3*prev - base)), prev starting at base.
		{"decorrelated r=0 stays at base", DecorrelatedJitter(100*time.Millisecond, time.Second), 0, ms(100, 100, 100)},
		{"decorrelated r=0.5", DecorrelatedJitter(100*time.Millisecond, time.Second), 0.5, ms(200, 350, 575, 912.5, 1000, 1000)},
		{"decorrelated base above cap", DecorrelatedJitter(2*time.Second, time.Second), 0.5, ms(1000, 1000)},
		{"decorrelated zero base", DecorrelatedJitter(0, time.Second), 0.5, ms(0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sequence(tt.b, len(tt.want), tt.r); !equalDurations(got, tt.want) {
				t.Errorf("delays = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestBackoffExtremeRetryNumbers checks the saturation of every strategy for
// retry numbers far beyond any real call, and below 1.
func TestBackoffExtremeRetryNumbers(t *testing.T) {
	tests := []struct {
		name  string
		b     Backoff
		retry int
		want  time.Duration
	}{
		{"linear MaxInt capped", Linear(time.Second, time.Second, time.Hour), math.MaxInt, time.Hour},
		{"linear MaxInt uncapped saturates", Linear(time.Second, time.Second, 0), math.MaxInt, maxDelay},
		{"linear 1ns steps uncapped", Linear(1, 1, 0), math.MaxInt, maxDelay},
		{"linear retry 0 counts as 1", Linear(time.Second, time.Second, 0), 0, time.Second},
		{"exponential MaxInt", Exponential(100*time.Millisecond, 10*time.Second, 2), math.MaxInt, 10 * time.Second},
		{"exponential uncapped saturates", Exponential(time.Millisecond, 0, 10), 100, maxDelay},
		{"exponential huge multiplier", Exponential(1, -1, math.MaxFloat64), 2, maxDelay},
		{"exponential negative retry counts as 1", Exponential(time.Second, 0, 2), math.MinInt, time.Second},
		{"fibonacci F(92) fits", Fibonacci(1, 0), 92, 7540113804746346429},
		{"fibonacci F(93) saturates", Fibonacci(1, 0), 93, maxDelay},
		{"fibonacci MaxInt", Fibonacci(time.Millisecond, time.Minute), math.MaxInt, time.Minute},
		{"decorrelated v2 MaxInt", DecorrelatedJitterV2(time.Second, time.Hour), math.MaxInt, time.Hour},
		{"decorrelated v2 MaxInt uncapped", DecorrelatedJitterV2(time.Second, 0), math.MaxInt, maxDelay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := tt.b.Delay(Step{Retry: tt.retry, Rand: 0.5}); got != tt.want {
				t.Errorf("Delay(retry %d) = %v, want %v", tt.retry, got, tt.want)
			}
		})
	}
}

func TestDecorrelatedJitterBounds(t *testing.T) {
	const base, cap = 10 * time.Millisecond, 5 * time.Second
	b := DecorrelatedJitter(base, cap)
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		var prev time.Duration
		for i := 1; i <= 30; i++ {
			d, _ := b.Delay(Step{Retry: i, Prev: prev, Rand: rnd.Float64()})
			hi := min(cap, 3*max(prev, base))
			if d < base || d > hi {
				t.Fatalf("retry %d after %v: delay %v outside [%v, %v]", i, prev, d, base, hi)
			}
			prev = d
		}
	}
}

func TestDecorrelatedJitterV2(t *testing.T) {
	t.Run("sequence", func(t *testing.T) {
		// Reference values of Polly's formula for median 1s and Rand 0.5,
		// computed independently: ((2^t*tanh(sqrt(4t))) - prev) / 1.4 * 1s.
		want := []time.Duration{897404935, 1093003547, 2035747962, 4045979422}
		got := sequence(DecorrelatedJitterV2(time.Second, 0), len(want), 0.5)
		for i := range want {
			if diff := got[i] - want[i]; diff < -2 || diff > 2 {
				t.Errorf("retry %d: delay %v, want %v", i+1, got[i], want[i])
			}
		}
	})
	t.Run("delays telescope to the formula's running value", func(t *testing.T) {
		// The sum of the first n delays is next(t_n)/1.4*median: the state
		// must carry the previous formula value, not the delay.
		b := DecorrelatedJitterV2(time.Second, 0)
		rnd := rand.New(rand.NewPCG(3, 4))
		var prev time.Duration
		var state float64
		var sum time.Duration
		for i := 1; i <= 12; i++ {
			r := rnd.Float64()
			d, s := b.Delay(Step{Retry: i, Prev: prev, State: state, Rand: r})
			sum += d
			prev, state = d, s
			tn := float64(i-1) + r
			want := math.Pow(2, tn) * math.Tanh(math.Sqrt(4*tn)) / 1.4 * float64(time.Second)
			if math.Abs(float64(sum)-want) > float64(i) { // 1ns truncation per delay
				t.Fatalf("after %d retries the delays sum to %v, want %v", i, sum, time.Duration(want))
			}
		}
	})
	t.Run("medians", func(t *testing.T) {
		// Polly scales the formula so that the median delays are close to
		// 0.9*median, 1.1*median, then double: 2, 4, 8 times median.
		const samples = 2001
		b := DecorrelatedJitterV2(time.Second, 0)
		rnd := rand.New(rand.NewPCG(5, 6))
		byRetry := make([][]time.Duration, 5)
		for range samples {
			var prev time.Duration
			var state float64
			for i := range byRetry {
				d, s := b.Delay(Step{Retry: i + 1, Prev: prev, State: state, Rand: rnd.Float64()})
				byRetry[i] = append(byRetry[i], d)
				prev, state = d, s
			}
		}
		for i, ds := range byRetry {
			slices.Sort(ds)
			median := ds[samples/2]
			want := []time.Duration{900, 1100, 2000, 4000, 8000}[i] * time.Millisecond
			if median < want*9/10 || median > want*11/10 {
				t.Errorf("retry %d: median delay %v, want within 10%% of %v", i+1, median, want)
			}
		}
	})
	t.Run("capped and never negative", func(t *testing.T) {
		b := DecorrelatedJitterV2(time.Second, 3*time.Second)
		for _, st := range []float64{0, math.NaN(), math.Inf(1), math.Inf(-1), 1e300} {
			for _, r := range []float64{0, 0.5, 0.9999} {
				for i := 1; i <= 70; i++ {
					if d, _ := b.Delay(Step{Retry: i, State: st, Rand: r}); d < 0 || d > 3*time.Second {
						t.Fatalf("retry %d state %v rand %v: delay %v outside [0, 3s]", i, st, r, d)
					}
				}
			}
		}
	})
}

func TestBackoffFunc(t *testing.T) {
	b := BackoffFunc(func(n int) time.Duration { return time.Duration(n) * time.Second })
	if got := sequence(b, 3, 0.5); !equalDurations(got, ms(1000, 2000, 3000)) {
		t.Errorf("delays = %v, want [1s 2s 3s]", got)
	}
}

func TestJitter(t *testing.T) {
	const d = time.Second
	almostOne := math.Nextafter(1, 0)
	tests := []struct {
		name   string
		j      Jitter
		d      time.Duration
		r      float64
		want   time.Duration
		wantLo time.Duration // when want is -1: the result must be in [wantLo, wantHi]
		wantHi time.Duration
	}{
		{name: "none", j: NoJitter, d: d, r: 0.3, want: d},
		{name: "none negative", j: NoJitter, d: -d, r: 0.3, want: 0},
		{name: "full r=0", j: FullJitter, d: d, r: 0, want: 0},
		{name: "full r=0.5", j: FullJitter, d: d, r: 0.5, want: d / 2},
		{name: "full r→1 stays below d", j: FullJitter, d: d, r: almostOne, want: -1, wantLo: d - time.Microsecond, wantHi: d - 1},
		{name: "full r>1 clamped", j: FullJitter, d: d, r: 7, want: -1, wantLo: d - time.Microsecond, wantHi: d - 1},
		{name: "full NaN r", j: FullJitter, d: d, r: math.NaN(), want: 0},
		{name: "full zero delay", j: FullJitter, d: 0, r: 0.5, want: 0},
		{name: "equal r=0", j: EqualJitter, d: d, r: 0, want: d / 2},
		{name: "equal r=0.5", j: EqualJitter, d: d, r: 0.5, want: 3 * d / 4},
		{name: "equal odd delay", j: EqualJitter, d: 3, r: 0, want: 1},
		{name: "equal negative r", j: EqualJitter, d: d, r: -1, want: d / 2},
		{name: "equal negative delay", j: EqualJitter, d: -d, r: 0.5, want: 0},
		{name: "proportional r=0", j: ProportionalJitter(0.2), d: d, r: 0, want: 800 * time.Millisecond},
		{name: "proportional r=0.5", j: ProportionalJitter(0.2), d: d, r: 0.5, want: d},
		{name: "proportional r→1", j: ProportionalJitter(0.2), d: d, r: almostOne, want: -1, wantLo: 1199 * time.Millisecond, wantHi: 1200 * time.Millisecond},
		{name: "proportional factor above 1 clamped", j: ProportionalJitter(5), d: d, r: 0, want: 0},
		{name: "proportional negative factor is none", j: ProportionalJitter(-1), d: d, r: 0, want: d},
		{name: "proportional NaN factor is none", j: ProportionalJitter(math.NaN()), d: d, r: 0, want: d},
		{name: "proportional saturates", j: ProportionalJitter(1), d: maxDelay, r: almostOne, want: maxDelay},
		{name: "proportional negative delay", j: ProportionalJitter(0.5), d: -d, r: 0.5, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.j(tt.d, tt.r)
			if tt.want >= 0 && got != tt.want {
				t.Errorf("jitter(%v, %v) = %v, want %v", tt.d, tt.r, got, tt.want)
			}
			if tt.want < 0 && (got < tt.wantLo || got > tt.wantHi) {
				t.Errorf("jitter(%v, %v) = %v, want within [%v, %v]", tt.d, tt.r, got, tt.wantLo, tt.wantHi)
			}
		})
	}
}
