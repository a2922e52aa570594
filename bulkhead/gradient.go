package bulkhead

import (
	"math"
	"time"
)

// GradientConfig configures a [Gradient] strategy. The zero value selects
// every default.
type GradientConfig struct {
	// MinLimit is the lowest limit. Default, and for values below 1:
	// DefaultMinLimit (1). A MinLimit above MaxLimit is lowered to it.
	MinLimit int
	// MaxLimit is the highest limit. Default, and for values below 1:
	// DefaultMaxLimit (1000).
	MaxLimit int
	// Smoothing is the weight of each new estimate in the limit, in (0, 1]:
	// 1 takes every estimate as it is. Default, and for values outside
	// (0, 1]: 0.2.
	Smoothing float64
	// Tolerance is how many times the long-term latency the short-term
	// latency may reach before the limit shrinks, at least 1. Default, and
	// for values below 1 or not finite: 1.
	Tolerance float64
	// QueueSize is the headroom added to the limit on every update, which
	// lets it grow while latency stays flat. Default, and for values below
	// 1: the square root of the current limit, at least 1.
	QueueSize int
	// Window is the shortest sampling window: samples are averaged over at
	// least Window and at least WindowSamples samples, then the limit is
	// updated once. Default, and for values of zero or less: 1s.
	Window time.Duration
	// WindowSamples is the fewest samples in a window. Default, and for
	// values below 1: 10.
	WindowSamples int
	// LongWindow is the number of windows the long-term latency average
	// spans (an exponential moving average whose first 10 windows are
	// averaged plainly). Default, and for values below 1: 600.
	LongWindow int
}

// Validate reports every field that [NewGradient] would replace by its
// default because it is out of range, each as a *[resilience.FieldError]
// whose Field is the field's name, joined with [errors.Join]; nil when c is
// valid. Zero fields are valid: they select the defaults.
func (c GradientConfig) Validate() error {
	var p problems
	p.check(c.MinLimit >= 0, "MinLimit", c.MinLimit, "must be at least 0")
	p.check(c.MaxLimit >= 0, "MaxLimit", c.MaxLimit, "must be at least 0")
	p.check(c.Smoothing == 0 || inRange(c.Smoothing, 0, 1, true), "Smoothing", c.Smoothing, "must be in (0, 1]")
	p.check(c.Tolerance == 0 || (c.Tolerance >= 1 && !math.IsInf(c.Tolerance, 1)), "Tolerance", c.Tolerance, "must be finite and at least 1")
	p.check(c.QueueSize >= 0, "QueueSize", c.QueueSize, "must be at least 0")
	p.check(c.Window >= 0, "Window", c.Window, "must be at least 0")
	p.check(c.WindowSamples >= 0, "WindowSamples", c.WindowSamples, "must be at least 0")
	p.check(c.LongWindow >= 0, "LongWindow", c.LongWindow, "must be at least 0")
	p.checkMinMax(c.MinLimit, c.MaxLimit)
	return p.err()
}

// Gradient is a latency-based [Strategy] after Netflix concurrency-limits'
// Gradient2Limit. Once per sampling window it compares the window's average
// latency (short term) with a long-term exponential moving average of the
// window averages:
//
//	gradient = clamp(Tolerance * long / short, 0.5, 1)
//	estimate = limit * gradient + QueueSize
//	limit    = limit * (1 - Smoothing) + estimate * Smoothing
//
// clamped into [MinLimit, MaxLimit]. While latency stays flat the gradient
// is 1 and the limit grows by the queue headroom; once work queues up
// behind the limit, latency rises above its long-term average and the limit
// shrinks, by at most half per window.
//
// Unlike Gradient2, a window with a drop counts as the steepest gradient,
// 0.5, and so lowers the limit. As in Gradient2, a window whose executions
// never had half the limit in flight (and no drop) leaves the limit
// unchanged, and when the long-term average exceeds twice the short-term
// one, as after a long overload, it is cut by a tenth per window so the
// limit recovers sooner.
//
// Like Gradient2, it has no fixed reference latency, which has two
// consequences. The long-term average is learnt from the first windows, so
// the limit should start below the service's capacity: started far above,
// it takes the latency of an overloaded service for normal. And under load
// that stays above capacity for a long time, the long-term average slowly
// catches up with the raised latency and the limit creeps up with it, at a
// rate set by LongWindow: in simulation with the defaults, from about 1.15
// times the capacity after five minutes to about 1.3 times after ten.
//
// Gradient is not safe for concurrent use on its own; the [Bulkhead] it is
// given to serialises its calls. Create it with [NewGradient]; the zero
// value is not usable.
type Gradient struct {
	minLimit, maxLimit int
	smoothing          float64
	tolerance          float64
	queueSize          int
	window             time.Duration
	windowSamples      int
	longFactor         float64

	limit     float64
	long      float64 // long-term average latency, in nanoseconds
	longCount int     // windows averaged into long so far

	winOpen        bool
	winStart       time.Time
	winSamples     int
	winRTTs        int     // samples that carry a latency (not dropped)
	winSum         float64 // their latencies, in nanoseconds
	winMaxInFlight int
	winDropped     bool
}

var _ Strategy = (*Gradient)(nil)

// longWarmup is how many windows the long-term average averages plainly
// before it turns exponential, as in Gradient2.
const longWarmup = 10

// NewGradient returns a Gradient strategy configured by c; out-of-range
// fields take their defaults as documented on [GradientConfig]. It never
// fails.
func NewGradient(c GradientConfig) *Gradient {
	g := &Gradient{
		smoothing:     c.Smoothing,
		tolerance:     c.Tolerance,
		queueSize:     max(c.QueueSize, 0),
		window:        c.Window,
		windowSamples: c.WindowSamples,
	}
	g.minLimit, g.maxLimit = limits(c.MinLimit, c.MaxLimit)
	if !inRange(g.smoothing, 0, 1, true) {
		g.smoothing = 0.2
	}
	if !(g.tolerance >= 1) || math.IsInf(g.tolerance, 1) {
		g.tolerance = 1
	}
	if g.window <= 0 {
		g.window = time.Second
	}
	if g.windowSamples < 1 {
		g.windowSamples = 10
	}
	longWindow := c.LongWindow
	if longWindow < 1 {
		longWindow = 600
	}
	g.longFactor = 2 / (float64(longWindow) + 1)
	g.limit = float64(g.minLimit)
	return g
}

// Init implements [Strategy]: the limit starts at initial clamped into
// [MinLimit, MaxLimit], with no latency history.
func (g *Gradient) Init(initial int) int {
	g.limit = clampLimit(float64(initial), g.minLimit, g.maxLimit)
	g.long, g.longCount = 0, 0
	g.resetWindow()
	return int(g.limit)
}

// Update implements [Strategy]: it adds s to the current window and, once
// the window is complete, updates the limit.
func (g *Gradient) Update(s Sample) int {
	if !g.winOpen {
		g.winOpen, g.winStart = true, s.Now
	}
	g.winSamples++
	g.winMaxInFlight = max(g.winMaxInFlight, s.InFlight)
	if s.Dropped {
		g.winDropped = true
	} else {
		// A latency below 1ns (a coarse or simulated clock) counts as 1ns
		// so that the ratios below stay finite.
		g.winSum += math.Max(float64(s.RTT), 1)
		g.winRTTs++
	}
	if g.winSamples >= g.windowSamples && s.Now.Sub(g.winStart) >= g.window {
		g.update()
		g.resetWindow()
	}
	return int(g.limit)
}

func (g *Gradient) resetWindow() {
	g.winOpen = false
	g.winSamples, g.winRTTs, g.winSum = 0, 0, 0
	g.winMaxInFlight, g.winDropped = 0, false
}

// update applies one window to the limit.
func (g *Gradient) update() {
	gradient := 1.0
	if g.winRTTs > 0 {
		short := g.winSum / float64(g.winRTTs)
		long := g.addLong(short)
		if long/short > 2 {
			// Latency is back to normal after a long overload: let the
			// long-term average follow sooner than its window would.
			g.long *= 0.9
		}
		gradient = math.Max(0.5, math.Min(1, g.tolerance*long/short))
	}
	if g.winDropped {
		gradient = 0.5
	} else if float64(g.winMaxInFlight) < g.limit/2 {
		return // the bulkhead was not the bottleneck: nothing learnt
	}
	queue := float64(g.queueSize)
	if g.queueSize == 0 {
		queue = math.Max(1, math.Sqrt(g.limit))
	}
	estimate := g.limit*gradient + queue
	g.limit = clampLimit(g.limit*(1-g.smoothing)+estimate*g.smoothing, g.minLimit, g.maxLimit)
}

// addLong adds one window's average latency to the long-term average and
// returns the new average.
func (g *Gradient) addLong(short float64) float64 {
	if g.longCount < longWarmup {
		g.longCount++
		g.long += (short - g.long) / float64(g.longCount)
	} else {
		g.long += (short - g.long) * g.longFactor
	}
	return g.long
}
