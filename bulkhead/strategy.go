package bulkhead

import (
	"errors"
	"fmt"
	"math"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// Strategy computes a [Bulkhead]'s concurrency limit from what its
// executions experience. [Config].Strategy installs one; [AIMD],
// [Gradient] and [CPU] are the ones this package provides.
//
// The bulkhead calls a Strategy with its own lock held, one call at a time,
// so an implementation needs no locking but must be fast, must not block and
// must not call the bulkhead. A Strategy keeps state and belongs to a single
// bulkhead.
type Strategy interface {
	// Init is called once, by [NewFromConfig], with [Config].Limit (0 for
	// a negative one). It returns the limit the bulkhead starts with,
	// typically initial clamped into the strategy's bounds; below 1 counts
	// as 1.
	Init(initial int) int
	// Update records one finished execution and returns the new limit.
	// Executions released as [OutcomeIgnored] are not reported.
	Update(s Sample) int
}

// Sample is what a [Strategy] learns from one finished execution.
type Sample struct {
	// RTT is how long the permit was held, from admission to release,
	// measured with the bulkhead's clock; never negative.
	RTT time.Duration
	// InFlight is the number of permits held when this one was admitted,
	// itself included. Strategies use it to tell whether the limit was
	// actually reached.
	InFlight int
	// Dropped reports an execution released as [OutcomeDropped]: a sign of
	// overload.
	Dropped bool
	// Now is the time of the release on the bulkhead's clock.
	Now time.Time
}

// Defaults shared by the strategies.
const (
	// DefaultMinLimit is the lowest limit a strategy sets unless configured
	// otherwise.
	DefaultMinLimit = 1
	// DefaultMaxLimit is the highest limit a strategy sets unless configured
	// otherwise.
	DefaultMaxLimit = 1000
)

// limits normalises a strategy's bounds the way their doc comments say:
// values below 1 take the defaults and a minimum above the maximum is
// lowered to it.
func limits(minLimit, maxLimit int) (lo, hi int) {
	lo, hi = minLimit, maxLimit
	if lo < 1 {
		lo = DefaultMinLimit
	}
	if hi < 1 {
		hi = DefaultMaxLimit
	}
	return min(lo, hi), hi
}

// clampLimit clamps f into [lo, hi]; NaN becomes lo.
func clampLimit(f float64, lo, hi int) float64 {
	if !(f >= float64(lo)) { // catches NaN too
		return float64(lo)
	}
	return math.Min(f, float64(hi))
}

// inRange reports whether f is a number in (lo, hi), hi included when
// closed is true.
func inRange(f, lo, hi float64, closed bool) bool {
	if closed {
		return f > lo && f <= hi
	}
	return f > lo && f < hi
}

// problems collects the FieldErrors of a Validate method.
type problems []error

// check records a problem with field unless ok.
func (p *problems) check(ok bool, field string, value any, reason string) {
	if !ok {
		*p = append(*p, &resilience.FieldError{Field: field, Value: value, Reason: reason})
	}
}

// checkMinMax records a MinLimit above the MaxLimit in effect.
func (p *problems) checkMinMax(minLimit, maxLimit int) {
	if _, hi := limits(minLimit, maxLimit); minLimit > hi {
		p.check(false, "MinLimit", minLimit, fmt.Sprintf("must not exceed MaxLimit (%d)", hi))
	}
}

// err joins the problems; nil when there are none.
func (p problems) err() error { return errors.Join(p...) }
