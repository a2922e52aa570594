package retry

import (
	"math"
	"time"
)

// Step describes the retry a [Backoff] computes the delay for. The engine
// fills it in; custom strategies read it.
type Step struct {
	// Retry is the number of the retry: 1 for the first retry (the second
	// attempt), 2 for the next one, and so on. The count restarts at 1 after
	// a retry whose delay a [Pushback] chose.
	Retry int
	// Prev is the delay the Backoff returned for the previous retry, before
	// jitter; 0 for the first retry.
	Prev time.Duration
	// State is the second result the Backoff returned for the previous
	// retry; 0 for the first retry. Stateful strategies such as
	// [DecorrelatedJitterV2] keep their running value there.
	State float64
	// Rand is a uniformly distributed random number in [0, 1), fresh for each
	// retry, for strategies that are random by nature.
	Rand float64
}

// Backoff decides how long to wait before each retry.
//
// Implementations must be safe for concurrent use: a [Policy] calls the same
// Backoff from every goroutine that uses it. Per-call state travels in
// [Step.Prev] and [Step.State], which the engine keeps for each call, so a
// Backoff itself needs no mutable state.
type Backoff interface {
	// Delay returns the wait before the retry s describes, before jitter,
	// and the state to hand to the next retry's Step.State. A negative delay
	// counts as zero.
	Delay(s Step) (delay time.Duration, state float64)
}

// BackoffFunc adapts a function of the retry number (1 for the first retry)
// to the [Backoff] interface; it ignores Step.Prev, Step.State and
// Step.Rand. It is safe for concurrent use when f is.
type BackoffFunc func(retry int) time.Duration

// Delay returns f(s.Retry) and a zero state.
func (f BackoffFunc) Delay(s Step) (time.Duration, float64) { return f(s.Retry), 0 }

// maxDelay is the largest delay any strategy returns when it has no cap.
const maxDelay = time.Duration(math.MaxInt64)

// limitOf returns the cap a strategy applies: max itself when positive, and
// the largest Duration otherwise.
func limitOf(max time.Duration) time.Duration {
	if max <= 0 {
		return maxDelay
	}
	return max
}

// fromFloat converts f nanoseconds to a Duration in [0, limit]: NaN and
// values at or below zero give 0, values at or above limit give limit. limit
// must not be negative.
func fromFloat(f float64, limit time.Duration) time.Duration {
	if !(f > 0) { // NaN, zero and negative values
		return 0
	}
	// float64(limit) may round up past limit; every float strictly below it
	// is then still at most limit, so the conversion below cannot overflow.
	if f >= float64(limit) {
		return limit
	}
	return min(time.Duration(f), limit)
}

// unit maps r into [0, 1): NaN and negative values give 0, values at or
// above 1 give the largest float64 below 1.
func unit(r float64) float64 {
	switch {
	case !(r > 0):
		return 0
	case r >= 1:
		return math.Nextafter(1, 0)
	}
	return r
}

// retryNumber returns s.Retry, or 1 when it is below 1.
func retryNumber(s Step) int { return max(s.Retry, 1) }

// Constant returns a Backoff that waits d before every retry. A negative d
// counts as zero; Constant(0) retries at once.
func Constant(d time.Duration) Backoff { return constant{d: max(d, 0)} }

type constant struct{ d time.Duration }

// Delay returns the constant delay.
func (b constant) Delay(Step) (time.Duration, float64) { return b.d, 0 }

// Linear returns a Backoff that waits initial before the first retry and
// step longer before each following one (initial + (n-1)*step before retry
// n), never more than max. Negative initial or step count as zero; a max of
// zero or less means no cap other than the largest Duration. The arithmetic
// saturates at the cap instead of overflowing.
func Linear(initial, step, max time.Duration) Backoff {
	return linear{initial: maxZero(initial), step: maxZero(step), limit: limitOf(max)}
}

type linear struct{ initial, step, limit time.Duration }

// Delay returns initial + (n-1)*step, saturating at the cap.
func (b linear) Delay(s Step) (time.Duration, float64) {
	if b.initial >= b.limit {
		return b.limit, 0
	}
	k := int64(retryNumber(s) - 1)
	if b.step == 0 || k == 0 {
		return b.initial, 0
	}
	// initial + k*step <= limit  <=>  k <= (limit-initial)/step, checked
	// without computing the product.
	if k > int64(b.limit-b.initial)/int64(b.step) {
		return b.limit, 0
	}
	return b.initial + time.Duration(k)*b.step, 0
}

// Exponential returns a Backoff that waits initial before the first retry
// and multiplier times longer before each following one
// (initial * multiplier^(n-1) before retry n), never more than max. A negative
// initial counts as zero; a max of zero or less means no cap other than the
// largest Duration; a multiplier below 1 or NaN counts as 1 (a constant
// delay), and +Inf is allowed (initial, then max). The arithmetic saturates
// at the cap instead of overflowing.
//
// Exponential(100*time.Millisecond, 10*time.Second, 2) waits 100ms, 200ms,
// 400ms, ... 6.4s, then 10s for every further retry. It is the default
// backoff of [New].
func Exponential(initial, max time.Duration, multiplier float64) Backoff {
	if !(multiplier >= 1) { // NaN and values below 1
		multiplier = 1
	}
	return exponential{initial: maxZero(initial), limit: limitOf(max), multiplier: multiplier}
}

type exponential struct {
	initial, limit time.Duration
	multiplier     float64
}

// Delay returns initial * multiplier^(n-1), saturating at the cap.
func (b exponential) Delay(s Step) (time.Duration, float64) {
	if b.initial == 0 { // avoids 0 * +Inf = NaN below
		return 0, 0
	}
	n := retryNumber(s)
	if b.multiplier == 1 || n == 1 {
		return min(b.initial, b.limit), 0
	}
	// math.Pow returns +Inf rather than overflowing; fromFloat saturates.
	f := float64(b.initial) * math.Pow(b.multiplier, float64(n-1))
	return fromFloat(f, b.limit), 0
}

// Fibonacci returns a Backoff that waits initial times the Fibonacci
// numbers 1, 1, 2, 3, 5, 8, ... (initial * F(n) before retry n, as
// tokio-retry's FibonacciBackoff does), never more than max. A negative
// initial counts as zero; a max of zero or less means no cap other than the
// largest Duration. The arithmetic saturates at the cap instead of
// overflowing, and takes at most about 92 steps for any retry number.
func Fibonacci(initial, max time.Duration) Backoff {
	return fibonacci{initial: maxZero(initial), limit: limitOf(max)}
}

type fibonacci struct{ initial, limit time.Duration }

// Delay returns initial * F(n), saturating at the cap.
func (b fibonacci) Delay(s Step) (time.Duration, float64) {
	if b.initial == 0 {
		return 0, 0
	}
	if b.initial >= b.limit {
		return b.limit, 0
	}
	n := retryNumber(s)
	q := uint64(b.limit / b.initial) // the largest factor that fits under the cap
	a, c := uint64(1), uint64(1)     // F(i), F(i+1)
	// Invariant: a <= q and c <= q+1 <= 2^63, so a+c cannot overflow a
	// uint64; the loop ends within ~92 steps because F(93) > 2^63.
	for i := 1; i < n; i++ {
		a, c = c, a+c
		if a > q {
			return b.limit, 0
		}
		c = min(c, q+1) // only whether c exceeds q matters
	}
	return time.Duration(a) * b.initial, 0
}

// DecorrelatedJitter returns the "decorrelated jitter" Backoff of the AWS
// Architecture Blog ("Exponential Backoff And Jitter"): each delay is drawn
// uniformly between base and three times the previous delay, capped:
//
//	sleep = min(max, random_between(base, prev*3)),  prev starting at base
//
// so delays grow roughly exponentially but spread out between clients. A
// negative base counts as zero (every delay is then zero); a max of zero or
// less means no cap other than the largest Duration. Delays never fall below
// min(base, max) and never exceed the cap.
func DecorrelatedJitter(base, max time.Duration) Backoff {
	return decorrelated{base: maxZero(base), limit: limitOf(max)}
}

type decorrelated struct{ base, limit time.Duration }

// Delay returns min(cap, random_between(base, 3*max(prev, base))).
func (b decorrelated) Delay(s Step) (time.Duration, float64) {
	prev := max(s.Prev, b.base)
	lo := float64(b.base)
	hi := 3 * float64(prev) // float: no overflow for any prev
	return fromFloat(lo+unit(s.Rand)*(hi-lo), b.limit), 0
}

// Constants of the Polly V2 formula; see DecorrelatedJitterV2.
const (
	v2PFactor       = 4.0     // smooths the first delay
	v2ScalingFactor = 1 / 1.4 // puts the median delays near 0.9, 1.1, 2, 4, 8 times median
)

// DecorrelatedJitterV2 returns the smoother decorrelated-jitter Backoff that
// Polly uses (DecorrelatedJitterBackoffV2, formula by George Polevoy): with
// t = (n-1) + Rand for retry n,
//
//	next  = 2^t * tanh(sqrt(4*t))
//	delay = (next - prev) / 1.4 * median,  prev being the previous next (0 at first)
//
// The delays' medians are close to 0.9*median, 1.1*median, 2*median,
// 4*median, 8*median, ..., with far fewer very short or very long outliers
// than [DecorrelatedJitter], and clients that failed together spread out. The running value prev travels in Step.State.
// A negative median counts as zero; a max of zero or less means no cap other
// than the largest Duration; delays never exceed the cap and never go
// negative, also for retry numbers where 2^t overflows (the delay is then the
// cap).
func DecorrelatedJitterV2(median, max time.Duration) Backoff {
	return decorrelatedV2{median: maxZero(median), limit: limitOf(max)}
}

type decorrelatedV2 struct{ median, limit time.Duration }

// Delay returns the Polly V2 delay and the formula's new running value.
func (b decorrelatedV2) Delay(s Step) (time.Duration, float64) {
	t := float64(retryNumber(s)-1) + unit(s.Rand)
	next := math.Pow(2, t) * math.Tanh(math.Sqrt(v2PFactor*t))
	if math.IsInf(next, 1) {
		return b.limit, next
	}
	// next grows with t, and t grows by more than 0 per retry, so the
	// difference is positive in a well-formed sequence; fromFloat turns a
	// malformed State (NaN, too large) into 0 rather than a negative delay.
	f := (next - s.State) * v2ScalingFactor * float64(b.median)
	return fromFloat(f, b.limit), next
}

func maxZero(d time.Duration) time.Duration { return max(d, 0) }
