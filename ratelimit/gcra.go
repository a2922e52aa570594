package ratelimit

import (
	"math"
	"sync/atomic"
	"time"
)

// The limiters keep time in units of 1/unitsPerNs nanosecond, as an int64
// counted from the limiter's epoch (its creation). An eighth of a
// nanosecond keeps the emission interval of fast limiters precise (10^9
// permits per second is 8 units, 3×10^8/s is 26.67 rounded to 27), and an
// int64 of them still covers 2^60 ns, about 36 years.
const (
	unitShift    = 3
	unitsPerNs   = 1 << unitShift
	unitsPerSec  = float64(time.Second) * unitsPerNs
	maxUnits     = math.MaxInt64
	deadTAT      = math.MinInt64 // the TAT of a keyed state that was evicted
	neverGranted = -1            // wait of a request that can never be granted
)

// toUnits converts a duration since the epoch to units, saturating: before
// the epoch is the epoch, past the range is the end of the range.
func toUnits(d time.Duration) int64 {
	switch {
	case d <= 0:
		return 0
	case d > maxUnits>>unitShift:
		return maxUnits
	}
	return int64(d) << unitShift
}

// fromUnits converts a non-negative number of units to a duration,
// rounding up, so that a caller that waits that long finds the permit.
func fromUnits(u int64) time.Duration {
	if u <= 0 {
		return 0
	}
	d := u >> unitShift
	if u&(unitsPerNs-1) != 0 {
		d++
	}
	return time.Duration(d)
}

// params are the normalized, immutable settings of a GCRA limiter.
//
// GCRA (the generic cell rate algorithm) keeps one number per limiter, the
// theoretical arrival time (TAT): the time at which the limiter would be
// full again if nothing more were asked of it. Granting n permits at time
// now moves it to max(TAT, now) + n×interval; a request is granted when
// that new TAT is at most now + limit, where limit is burst×interval. A TAT
// at or before now means the limiter is full: burst permits are available.
type params struct {
	unlimited bool
	rate      float64 // permits per second, as configured after clamping
	burst     int
	interval  int64 // emission interval 1/rate, in units, at least 1
	limit     int64 // burst × interval, in units
}

func newParams(rate float64, burst int) params {
	rate, burst = effective(rate, burst)
	if rate == 0 {
		return params{unlimited: true, burst: burst}
	}
	p := params{rate: rate, burst: burst}
	// Rates below about 8.7e-10/s have an interval beyond the range: they
	// grant one permit and then nothing for the life of the limiter.
	if iv := unitsPerSec / rate; iv >= maxUnits {
		p.interval = maxUnits
	} else {
		p.interval = max(int64(math.Round(iv)), 1)
	}
	// A burst longer than the range of time is the longest that fits.
	if most := maxUnits / p.interval; int64(burst) > most {
		p.burst = int(most)
	}
	p.limit = int64(p.burst) * p.interval
	return p
}

// effective returns the rate and burst a limiter uses for the configured
// values: an invalid rate counts as 0 (unlimited), a rate above MaxRate as
// MaxRate, and a burst of zero or less as the default, one second's worth
// of permits (at least 1).
func effective(rate float64, burst int) (float64, int) {
	if !(rate > 0) || math.IsInf(rate, 1) {
		return 0, 0
	}
	rate = min(rate, MaxRate)
	if burst <= 0 {
		burst = int(max(math.Ceil(rate), 1))
	}
	return rate, burst
}

// outcome is the result of one decision of [params.take].
type outcome uint8

const (
	granted outcome = iota
	refused         // not within maxWait; wait says how long
	never           // can never be granted: n above the burst, or beyond the range
	dead            // the keyed state was evicted; look the key up again
)

// take decides a request for n permits (n >= 1) at time now (in units,
// non-negative) against the TAT in st. It grants the request when the
// permits are available within maxWait units (0 for an immediate
// decision), and then returns the units until they are (0 when at once),
// and the new TAT. A refused request leaves st unchanged and returns the
// units until it would be granted.
//
// One compare-and-swap on st is the whole synchronisation: a decision
// computes the new TAT from the value it loaded and publishes it only if
// no other decision published one meanwhile; otherwise it decides again on
// the newer TAT. A refusal writes nothing, so callers being refused share
// the cache line instead of fighting over it.
func (p *params) take(st *atomic.Int64, now int64, n int, maxWait int64) (outcome, int64, int64) {
	if n > p.burst {
		return never, neverGranted, 0
	}
	// n <= burst, so n×interval <= limit fits.
	inc := int64(n) * p.interval
	for {
		tat := st.Load()
		if tat == deadTAT {
			return dead, 0, 0
		}
		base := max(tat, now)
		if base > maxUnits-inc {
			// The new TAT is beyond the range: the permits would come
			// after the end of the limiter's time.
			return never, neverGranted, 0
		}
		next := base + inc
		// next-now is in (0, MaxInt64] since 0 <= now <= base; wait is
		// how far the new TAT overshoots the limit.
		wait := next - now - p.limit
		if wait > 0 && wait > maxWait {
			return refused, wait, 0
		}
		if st.CompareAndSwap(tat, next) {
			return granted, max(wait, 0), next
		}
	}
}

// giveBack returns the n permits of a granted request whose new TAT was
// end, at time now: unless the permits were due already (act < now), the
// TAT moves back by n intervals, less whatever later grants took beyond
// end (they were computed as if these permits were gone), and never
// before now. If the TAT is below end, permits were given back already
// (by this request or another): nothing is given back then.
func (p *params) giveBack(st *atomic.Int64, now int64, n int, end, act int64) {
	if act < now || n <= 0 {
		return
	}
	inc := int64(n) * p.interval // granted, so it did not overflow
	for {
		tat := st.Load()
		if tat < end { // deadTAT included
			return
		}
		restore := inc - (tat - end)
		if restore <= 0 {
			return
		}
		next := max(tat-restore, now)
		if next >= tat || st.CompareAndSwap(tat, next) {
			return
		}
	}
}

// tokens returns the permits available at now for the TAT tat: burst when
// the limiter is full, fewer (possibly negative, with pending
// reservations) otherwise.
func (p *params) tokens(tat, now int64) float64 {
	if p.unlimited {
		return math.Inf(1)
	}
	owed := tat - now
	if owed <= 0 {
		return float64(p.burst)
	}
	// The float division may round a huge burst up: never report more.
	return min(float64(p.limit-owed)/float64(p.interval), float64(p.burst))
}
