package retry

import "time"

// Jitter randomises a delay computed by a [Backoff] so that clients that
// failed together do not retry together. d is the delay (never negative when
// the engine calls it) and r a uniformly distributed random number in [0, 1).
// A negative result counts as zero.
//
// The package's jitters are [NoJitter] (the default), [FullJitter],
// [EqualJitter] and [ProportionalJitter]; all are safe for concurrent use
// and treat an r outside [0, 1) or NaN as the nearest value inside.
// Jitter applies to the backoff's delays only, never to a delay a
// [Pushback] chose.
type Jitter func(d time.Duration, r float64) time.Duration

// NoJitter returns d unchanged (0 for a negative d). It is the default.
func NoJitter(d time.Duration, _ float64) time.Duration { return max(d, 0) }

// FullJitter returns a delay drawn uniformly from [0, d): "full jitter" of
// the AWS Architecture Blog, and the jitter of gRPC's own retries. It spreads
// clients out the most, at the price of sometimes retrying almost at once.
func FullJitter(d time.Duration, r float64) time.Duration {
	if d <= 0 {
		return 0
	}
	return fromFloat(unit(r)*float64(d), d)
}

// EqualJitter returns a delay drawn uniformly from [d/2, d): "equal jitter"
// of the AWS Architecture Blog, which keeps at least half of each delay.
func EqualJitter(d time.Duration, r float64) time.Duration {
	if d <= 0 {
		return 0
	}
	half := d / 2
	rest := d - half
	return half + fromFloat(unit(r)*float64(rest), rest)
}

// ProportionalJitter returns a Jitter that draws the delay uniformly from
// [d*(1-factor), d*(1+factor)), for instance ±20% for 0.2. The factor is
// clamped to [0, 1]; NaN counts as 0 (no jitter). The result may exceed the
// backoff's own cap by up to the factor; it saturates at the largest
// Duration instead of overflowing.
func ProportionalJitter(factor float64) Jitter {
	switch {
	case !(factor > 0):
		factor = 0
	case factor > 1:
		factor = 1
	}
	return func(d time.Duration, r float64) time.Duration {
		if d <= 0 {
			return 0
		}
		return fromFloat(float64(d)*(1+factor*(2*unit(r)-1)), maxDelay)
	}
}
