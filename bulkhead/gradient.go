package bulkhead

import (
	"math"
	"math/rand/v2"
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

	// ProbeInterval is the mean time between two probes of the no-load
	// latency, which reset the long-term average (see [Gradient]). Default,
	// and for values of zero or less: DefaultProbeInterval (1 minute).
	// Values below MinProbeInterval (1s) are invalid, and treated as it:
	// probes back to back would hold the limit low.
	ProbeInterval time.Duration
	// ProbeJitter spreads the probes: each interval is ProbeInterval
	// multiplied by a random factor in [1-ProbeJitter, 1+ProbeJitter], so
	// that servers started together do not probe together. Default, and
	// for values outside (0, 1): 0.15.
	ProbeJitter float64
	// ProbeLimit is the limit during a probe, kept low so that executions
	// do not queue: their latency is the service's own. Default, and for
	// values below 1: the limit when the probe starts divided by
	// DefaultProbeDivisor (5), rounded, at least DefaultProbeLimit (3). It
	// is clamped into [MinLimit, MaxLimit].
	ProbeLimit int
	// ProbeSamples is the number of executions admitted with at most
	// ProbeLimit in flight whose average latency a probe measures.
	// Default, and for values below 1: DefaultProbeSamples (20).
	ProbeSamples int
	// NoProbe turns the probes off; the Probe fields must then be zero.
	// The default, false, probes.
	NoProbe bool
}

// MinProbeInterval is the shortest GradientConfig.ProbeInterval.
const MinProbeInterval = time.Second

// Defaults of the probes of [GradientConfig]. Envoy's adaptive concurrency
// filter probes every minute or so at a limit of 3 until 50 requests
// completed; such a probe lasts about 18 latencies (one to drain, 50/3 to
// complete), and costs a service of 100 in flight at 250ms about 6% of its
// time and of its completions. These defaults probe at a fifth of the
// limit (at least 3), which for a limit near the service's capacity is
// still far below the point where executions queue, until 20 executions
// completed: in simulation that keeps both costs under 1% at 100 in
// flight and the completions lost under 2% at 10 (see [Gradient] for the
// formula), and holds the limit as well.
const (
	DefaultProbeInterval = time.Minute
	DefaultProbeJitter   = 0.15
	DefaultProbeLimit    = 3
	DefaultProbeSamples  = 20
	// DefaultProbeDivisor sets the limit of a probe when
	// [GradientConfig].ProbeLimit is zero: the limit at the probe's start
	// divided by DefaultProbeDivisor, at least DefaultProbeLimit.
	DefaultProbeDivisor = 5
)

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
	p.check(c.ProbeInterval >= 0, "ProbeInterval", c.ProbeInterval, "must be at least 0")
	p.check(c.ProbeInterval <= 0 || c.ProbeInterval >= MinProbeInterval, "ProbeInterval", c.ProbeInterval, "must be 0 (the default) or at least "+MinProbeInterval.String())
	p.check(c.ProbeJitter == 0 || inRange(c.ProbeJitter, 0, 1, false), "ProbeJitter", c.ProbeJitter, "must be in (0, 1)")
	p.check(c.ProbeLimit >= 0, "ProbeLimit", c.ProbeLimit, "must be at least 0")
	p.check(c.ProbeSamples >= 0, "ProbeSamples", c.ProbeSamples, "must be at least 0")
	if c.NoProbe {
		const unused = "set but NoProbe is true"
		p.check(c.ProbeInterval <= 0, "ProbeInterval", c.ProbeInterval, unused)
		p.check(c.ProbeJitter == 0, "ProbeJitter", c.ProbeJitter, unused)
		p.check(c.ProbeLimit <= 0, "ProbeLimit", c.ProbeLimit, unused)
		p.check(c.ProbeSamples <= 0, "ProbeSamples", c.ProbeSamples, unused)
	}
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
// The long-term average is learnt from the first windows, so the limit
// should start below the service's capacity: started far above, it takes
// the latency of an overloaded service for normal. And under load that
// stays above capacity, the average would slowly catch up with the raised
// latency and the limit creep up with it (in simulation, to about 1.5
// times the capacity after twenty minutes). So, as Envoy's adaptive
// concurrency filter does, Gradient probes the no-load latency about once
// per ProbeInterval: it lowers the limit to ProbeLimit until ProbeSamples
// executions admitted with at most ProbeLimit in flight have completed,
// takes their average latency as the new long-term average, and restores
// the limit it had. A probe that has not collected its samples after ten
// windows ends with the samples it has (with none, it changes nothing).
//
// A probe costs throughput while it lasts. With a latency of RTT it lasts
// about
//
//	RTT × (1 + ProbeSamples / ProbeLimit)
//
// (one RTT for the executions in flight to drain below ProbeLimit, then
// ProbeSamples executions, ProbeLimit at a time), once per ProbeInterval,
// and meanwhile the service completes ProbeLimit/limit of its usual work.
// With the defaults and a limit of 100 at 250ms that is 0.5s a minute,
// under 1% of the time; with a limit of 10, 2s a minute, and about 2% of
// the completions. [GradientConfig].NoProbe turns probes off.
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
	longWindow         int
	longFactor         float64
	probeInterval      time.Duration
	probeJitter        float64
	probeLimit         int // configured; 0: a share of the limit
	probeSamples       int
	noProbe            bool
	rand               *rand.Rand

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

	nextProbe  time.Time // zero until the first sample
	probing    bool
	probeCur   int // the limit of the running probe
	probeStart time.Time
	probeSaved float64 // the limit to restore after the probe
	probeN     int
	probeSum   float64 // nanoseconds
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
	g.longWindow, g.longFactor = longWindow, 2/(float64(longWindow)+1)
	g.probeInterval, g.probeJitter = c.ProbeInterval, c.ProbeJitter
	g.probeLimit, g.probeSamples, g.noProbe = c.ProbeLimit, c.ProbeSamples, c.NoProbe
	if g.probeInterval <= 0 {
		g.probeInterval = DefaultProbeInterval
	}
	g.probeInterval = max(g.probeInterval, MinProbeInterval)
	if !inRange(g.probeJitter, 0, 1, false) {
		g.probeJitter = DefaultProbeJitter
	}
	if g.probeLimit < 1 {
		g.probeLimit = 0
	} else {
		g.probeLimit = int(clampLimit(float64(g.probeLimit), g.minLimit, g.maxLimit))
	}
	if g.probeSamples < 1 {
		g.probeSamples = DefaultProbeSamples
	}
	g.rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	g.limit = float64(g.minLimit)
	return g
}

// Config returns the configuration in force, defaults filled in; a zero
// QueueSize is the square root of the limit, a zero ProbeLimit a share of
// it, as documented on [GradientConfig]. With NoProbe, the probe fields
// are zero.
func (g *Gradient) Config() GradientConfig {
	c := GradientConfig{
		MinLimit: g.minLimit, MaxLimit: g.maxLimit, Smoothing: g.smoothing, Tolerance: g.tolerance,
		QueueSize: g.queueSize, Window: g.window, WindowSamples: g.windowSamples, LongWindow: g.longWindow,
		NoProbe: g.noProbe,
	}
	if !g.noProbe {
		c.ProbeInterval, c.ProbeJitter, c.ProbeLimit, c.ProbeSamples = g.probeInterval, g.probeJitter, g.probeLimit, g.probeSamples
	}
	return c
}

// Init implements [Strategy]: the limit starts at initial clamped into
// [MinLimit, MaxLimit], with no latency history.
func (g *Gradient) Init(initial int) int {
	g.limit = clampLimit(float64(initial), g.minLimit, g.maxLimit)
	g.long, g.longCount = 0, 0
	g.resetWindow()
	g.nextProbe, g.probing = time.Time{}, false
	return int(g.limit)
}

// Update implements [Strategy]: it adds s to the current window and, once
// the window is complete, updates the limit; or, during a probe, to the
// probe.
func (g *Gradient) Update(s Sample) int {
	if g.probing {
		return g.probeUpdate(s)
	}
	if !g.noProbe && g.probeDue(s.Now) {
		g.probing, g.probeStart, g.probeSaved = true, s.Now, g.limit
		g.probeN, g.probeSum = 0, 0
		g.probeCur = g.probeLimitFor(g.limit)
		return g.probeUpdate(s)
	}
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

// probeDue reports whether a probe should start at now, scheduling the
// first one on the first sample.
func (g *Gradient) probeDue(now time.Time) bool {
	ahead := g.nextProbe.Sub(now) // 2*probeInterval may overflow: compare in two steps
	if g.nextProbe.IsZero() || (ahead > g.probeInterval && ahead-g.probeInterval > g.probeInterval) {
		// First sample, or the clock went backwards: schedule afresh.
		g.scheduleProbe(now)
		return false
	}
	return !now.Before(g.nextProbe)
}

// scheduleProbe sets the next probe a jittered ProbeInterval after now.
func (g *Gradient) scheduleProbe(now time.Time) {
	f := 1 + g.probeJitter*(2*g.rand.Float64()-1)
	// Converting a float64 beyond the int64 range is undefined: clamp.
	d := min(float64(g.probeInterval)*f, float64(maxProbeInterval))
	g.nextProbe = now.Add(max(time.Duration(d), 1))
}

// maxProbeInterval bounds the time to the next probe, far beyond any
// useful interval, so that the arithmetic on it cannot overflow.
const maxProbeInterval = 100 * 365 * 24 * time.Hour

// probeTimeout is how long a probe may last: ten windows, saturating.
func (g *Gradient) probeTimeout() time.Duration {
	if g.window > math.MaxInt64/10 {
		return math.MaxInt64
	}
	return 10 * g.window
}

// probeLimitFor returns the limit of a probe that starts with the limit at
// limit: the configured ProbeLimit, or else limit/DefaultProbeDivisor
// rounded, at least DefaultProbeLimit, clamped into [MinLimit, MaxLimit].
func (g *Gradient) probeLimitFor(limit float64) int {
	if g.probeLimit > 0 {
		return g.probeLimit
	}
	l := math.Max(float64(DefaultProbeLimit), math.Floor(limit/DefaultProbeDivisor+0.5))
	return int(clampLimit(l, g.minLimit, g.maxLimit))
}

// probeUpdate adds s to the running probe and returns the limit: the probe
// limit, or the restored one when the probe ends.
func (g *Gradient) probeUpdate(s Sample) int {
	if !s.Dropped && s.InFlight <= g.probeCur {
		g.probeN++
		g.probeSum += math.Max(float64(s.RTT), 1)
	}
	if s.Now.Before(g.probeStart) {
		g.probeStart = s.Now // the clock went backwards: time the probe from here
	}
	if g.probeN < g.probeSamples && s.Now.Sub(g.probeStart) < g.probeTimeout() {
		return int(math.Min(float64(g.probeCur), g.probeSaved))
	}
	if g.probeN > 0 {
		g.long = g.probeSum / float64(g.probeN)
		g.longCount = max(g.longCount, longWarmup)
	}
	g.probing, g.limit = false, g.probeSaved
	g.resetWindow()
	g.scheduleProbe(s.Now)
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
