package bulkhead

import "time"

// AIMDConfig configures an [AIMD] strategy. The zero value selects every
// default.
type AIMDConfig struct {
	// MinLimit is the lowest limit. Default, and for values below 1:
	// DefaultMinLimit (1). A MinLimit above MaxLimit is lowered to it.
	MinLimit int
	// MaxLimit is the highest limit. Default, and for values below 1:
	// DefaultMaxLimit (1000).
	MaxLimit int
	// BackoffRatio multiplies the limit on a drop. Default, and for values
	// outside (0, 1): 0.9.
	BackoffRatio float64
	// Timeout is the latency above which a successful execution counts as a
	// drop. Default, and for values of zero or less: 5s.
	Timeout time.Duration
}

// Validate reports every field that [NewAIMD] would replace by its default
// because it is out of range, each as a *[resilience.FieldError] whose
// Field is the field's name, joined with [errors.Join]; nil when c is
// valid. Zero fields are valid: they select the defaults.
func (c AIMDConfig) Validate() error {
	var p problems
	p.check(c.MinLimit >= 0, "MinLimit", c.MinLimit, "must be at least 0")
	p.check(c.MaxLimit >= 0, "MaxLimit", c.MaxLimit, "must be at least 0")
	p.check(c.BackoffRatio == 0 || inRange(c.BackoffRatio, 0, 1, false), "BackoffRatio", c.BackoffRatio, "must be in (0, 1)")
	p.check(c.Timeout >= 0, "Timeout", c.Timeout, "must be at least 0")
	p.checkMinMax(c.MinLimit, c.MaxLimit)
	return p.err()
}

// AIMD is a loss-based [Strategy], after TCP congestion avoidance and
// Netflix concurrency-limits' AIMDLimit: while executions succeed within
// the timeout it raises the limit by one per limit's worth of samples taken
// at the limit (about one per round trip), and on a drop, or a success
// slower than the timeout, it multiplies the limit by the backoff ratio
// (lowering it by at least one).
//
// After a decrease it ignores drops of executions admitted before that
// decrease: they reflect the old limit, and one overload episode should cut
// the limit once, not once per execution caught in it. Samples from
// executions admitted while fewer than half the limit were in flight do not
// raise the limit: the bulkhead was not the bottleneck.
//
// AIMD is not safe for concurrent use on its own; the [Bulkhead] it is given
// to serialises its calls. Create it with [NewAIMD]; the zero value is not
// usable.
type AIMD struct {
	minLimit, maxLimit int
	ratio              float64
	timeout            time.Duration

	limit        float64
	decreased    bool
	lastDecrease time.Time
}

var _ Strategy = (*AIMD)(nil)

// NewAIMD returns an AIMD strategy configured by c; out-of-range fields
// take their defaults as documented on [AIMDConfig]. It never fails.
func NewAIMD(c AIMDConfig) *AIMD {
	a := &AIMD{ratio: c.BackoffRatio, timeout: c.Timeout}
	a.minLimit, a.maxLimit = limits(c.MinLimit, c.MaxLimit)
	if !inRange(a.ratio, 0, 1, false) {
		a.ratio = 0.9
	}
	if a.timeout <= 0 {
		a.timeout = 5 * time.Second
	}
	a.limit = float64(a.minLimit)
	return a
}

// Init implements [Strategy]: the limit starts at initial clamped into
// [MinLimit, MaxLimit].
func (a *AIMD) Init(initial int) int {
	a.limit = clampLimit(float64(initial), a.minLimit, a.maxLimit)
	a.decreased = false
	return int(a.limit)
}

// Update implements [Strategy].
func (a *AIMD) Update(s Sample) int {
	cur := int(a.limit)
	inFlight := max(s.InFlight, 0)
	switch {
	case s.Dropped || s.RTT > a.timeout:
		// Only an execution admitted after the last decrease may cause
		// another one: s.Now-s.RTT is its admission time. Sub saturates, so
		// this holds for any clock values.
		if !a.decreased || s.Now.Sub(a.lastDecrease) >= s.RTT {
			next := min(float64(int(a.limit*a.ratio)), float64(cur-1))
			a.limit = clampLimit(next, a.minLimit, a.maxLimit)
			a.decreased, a.lastDecrease = true, s.Now
		}
	case inFlight >= cur-inFlight: // inFlight*2 >= cur, without overflow
		a.limit = clampLimit(a.limit+1/a.limit, a.minLimit, a.maxLimit)
	}
	return int(a.limit)
}
