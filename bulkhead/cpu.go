package bulkhead

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/engineeringlabs/grpc-resilience/internal/cpuusage"
)

// Defaults of [CPUConfig].
const (
	// DefaultCPUThreshold is the CPU usage above which a [CPU] strategy
	// limits concurrency: 80%, as in go-kratos/aegis (go-zero uses 90%).
	// Below it a server has headroom and its latency is still its own;
	// much above it the run queue grows and every call slows down, and a
	// moving average lags, so acting at 80% leaves room for the lag.
	DefaultCPUThreshold = 0.8
	// DefaultCPUWindow is the span of the throughput and latency
	// statistics: long enough to hold a quiet moment's latency and a busy
	// moment's throughput, short enough to follow a change of workload.
	DefaultCPUWindow = 5 * time.Second
	// DefaultCPUBuckets is the number of buckets in the window: 100ms
	// each by default, so that a bucket holds many calls of a busy server
	// and the maximum throughput is not a fluke of one call.
	DefaultCPUBuckets = 50
	// DefaultCPUCoolOff is how long the limit stays after the CPU usage
	// fell below the threshold. Shedding cuts CPU usage at once, and without
	// a cool-off the limit would switch off and on with every reading.
	DefaultCPUCoolOff = time.Second
)

// CPUConfig configures a [CPU] strategy. The zero value selects every
// default.
type CPUConfig struct {
	// Threshold is the CPU usage, as a fraction in (0, 1), above which the
	// limit applies. Default, and for values outside (0, 1):
	// DefaultCPUThreshold (0.8).
	Threshold float64
	// Window is the span of the statistics the limit is computed from.
	// Default, and for values of zero or less: DefaultCPUWindow (5s).
	Window time.Duration
	// Buckets is the number of buckets the window is split into. Default,
	// and for values below 1: DefaultCPUBuckets (50). A window shorter
	// than Buckets nanoseconds takes both defaults.
	Buckets int
	// CoolOff is how long the limit stays in force after the CPU usage
	// was last above Threshold. Default, and for values of zero or less:
	// DefaultCPUCoolOff (1s).
	CoolOff time.Duration
	// MinLimit is the lowest limit the strategy sets. Default, and for
	// values below 1: DefaultMinLimit (1). A MinLimit above the
	// bulkhead's limit is lowered to it.
	MinLimit int
	// Usage reports the CPU usage as a fraction in [0, 1] and true, or
	// false when it is unknown, in which case the strategy does not limit.
	// It is called about once per bucket, with the bulkhead's lock held,
	// so it must be fast and must not call the bulkhead. Values outside
	// [0, 1] are clamped and NaN counts as unknown. nil means the
	// process's shared sampler, described on [CPU], which never reads a
	// file on the caller.
	Usage func() (usage float64, known bool)
}

// Validate reports every field that [NewCPU] would replace by its default
// because it is out of range, each as a *[resilience.FieldError] whose
// Field is the field's name, joined with [errors.Join]; nil when c is
// valid. Zero fields are valid: they select the defaults.
func (c CPUConfig) Validate() error {
	var p problems
	p.check(c.Threshold == 0 || inRange(c.Threshold, 0, 1, false), "Threshold", c.Threshold, "must be in (0, 1)")
	p.check(c.Window >= 0, "Window", c.Window, "must be at least 0")
	p.check(c.Buckets >= 0, "Buckets", c.Buckets, "must be at least 0")
	if c.Window > 0 && c.Buckets > 0 {
		p.check(c.Window/time.Duration(c.Buckets) > 0, "Buckets", c.Buckets, "must not exceed Window in nanoseconds")
	}
	p.check(c.CoolOff >= 0, "CoolOff", c.CoolOff, "must be at least 0")
	p.check(c.MinLimit >= 0, "MinLimit", c.MinLimit, "must be at least 0")
	return p.err()
}

// CPU is a [Strategy] that sheds load when the CPU is busy, after the BBR
// rule of go-zero's adaptive shedder and go-kratos/aegis' bbr limiter.
//
// While the CPU usage is at most Threshold it sets no limit of its own: the
// bulkhead keeps the limit it was configured with ([Config].Limit, handed
// to Init). Once the usage is above Threshold, the limit becomes the
// concurrency the server has shown it can sustain:
//
//	limit = maxPass × minRT / bucket
//
// where, over the completed buckets of the last Window, maxPass is the
// largest number of executions completed in one bucket and minRT the
// smallest average latency of a bucket: the best throughput times the
// best latency, which by Little's law is the number of executions in
// flight at that throughput without queueing. The limit stays for CoolOff
// after the usage was last above Threshold, so that it does not switch off
// the moment shedding brings the usage down. Dropped executions count in
// neither statistic, and until the window holds a completed execution
// there is nothing to scale and the strategy does not limit.
//
// # The CPU signal
//
// Unless [CPUConfig].Usage replaces it, the usage comes from one sampler
// shared by the process, started on first use: every 250ms it reads the
// cgroup v2 cpu.stat and cpu.max of the process's cgroup, or else cgroup
// v1's cpuacct.usage and cpu.cfs_quota_us, or else the host-wide
// /proc/stat, and divides the CPU time used by the CPU time available (the
// quota, or the CPUs the process may run on if fewer, as its affinity
// mask says at each reading). Readings are smoothed by an exponential
// moving average with a time constant of one second. Its goroutine takes
// every reading: the strategy only loads the latest, so the bulkhead's
// lock is never held over a file read.
//
// The sampler's goroutine starts with the first update of a strategy that
// uses it and stops at once when the last such strategy is closed with
// [CPU.Close], or by itself after ten seconds without a reader. A test
// that checks for leaked goroutines (go.uber.org/goleak) and does not
// close every CPU strategy it used should ignore it:
//
//	goleak.IgnoreAnyFunction("github.com/engineeringlabs/grpc-resilience/internal/cpuusage.(*Sampler).loop")
//
// Where none of those files can be read (on every system but Linux, and in
// a sandbox that hides them) and after an implausible reading (a counter
// or the clock going backwards) until the next good one, the usage is
// unknown and the strategy does not limit: it never sheds on a CPU signal
// it does not have.
//
// CPU is not safe for concurrent use on its own; the [Bulkhead] it is given
// to serialises its calls ([CPU.Close] and [CPU.Config] excepted). Create
// it with [NewCPU]; the zero value is not usable.
type CPU struct {
	threshold float64
	bucket    time.Duration
	coolOff   time.Duration
	minLimit  int
	usage     func() (float64, bool)
	custom    bool // usage is CPUConfig.Usage, not the shared sampler

	sampler *cpuusage.Sampler // the shared sampler; nil with a custom usage
	// use is samplerUnused, samplerAcquired or samplerClosed.
	use atomic.Int32

	ceiling int // the bulkhead's own limit
	lo      int // minLimit lowered to ceiling

	ring     []cpuBucket
	cur      int // index of the bucket being filled
	curStart time.Time
	started  bool

	// Statistics of the completed buckets, recomputed when a bucket
	// completes.
	maxPass   int
	minRT     float64 // nanoseconds
	haveStats bool

	cpuHot   bool      // the last reading was above the threshold
	hotUntil time.Time // end of the cool-off
}

// cpuBucket holds the executions completed in one bucket.
type cpuBucket struct {
	pass  int
	rtSum float64 // nanoseconds
}

var _ Strategy = (*CPU)(nil)

// States of CPU.use.
const (
	samplerUnused int32 = iota
	samplerAcquired
	samplerClosed
)

// NewCPU returns a CPU strategy configured by c; out-of-range fields take
// their defaults as documented on [CPUConfig]. It never fails.
func NewCPU(c CPUConfig) *CPU {
	s := &CPU{threshold: c.Threshold, coolOff: c.CoolOff, minLimit: c.MinLimit, usage: c.Usage}
	if !inRange(s.threshold, 0, 1, false) {
		s.threshold = DefaultCPUThreshold
	}
	window, buckets := c.Window, c.Buckets
	if window <= 0 {
		window = DefaultCPUWindow
	}
	if buckets < 1 {
		buckets = DefaultCPUBuckets
	}
	if window/time.Duration(buckets) <= 0 {
		window, buckets = DefaultCPUWindow, DefaultCPUBuckets
	}
	s.bucket = window / time.Duration(buckets)
	s.ring = make([]cpuBucket, buckets)
	if s.coolOff <= 0 {
		s.coolOff = DefaultCPUCoolOff
	}
	if s.minLimit < 1 {
		s.minLimit = DefaultMinLimit
	}
	if s.usage == nil {
		s.sampler = cpuusage.Shared()
		s.usage = s.sampler.Usage
	} else {
		s.custom = true
	}
	s.ceiling, s.lo = DefaultMaxLimit, min(s.minLimit, DefaultMaxLimit)
	return s
}

// Config returns the configuration in force, defaults filled in; Usage is
// nil when the strategy reads the process's shared sampler. It is safe to
// call concurrently with the bulkhead's use of the strategy.
func (s *CPU) Config() CPUConfig {
	c := CPUConfig{
		Threshold: s.threshold,
		Window:    s.bucket * time.Duration(len(s.ring)),
		Buckets:   len(s.ring),
		CoolOff:   s.coolOff,
		MinLimit:  s.minLimit,
	}
	if s.custom {
		c.Usage = s.usage
	}
	return c
}

// Close ends the strategy's use of the process's shared CPU sampler: when
// no other strategy uses it, its goroutine stops before Close returns.
// Afterwards the strategy has no CPU signal, and sets no limit of its own.
// Close is for the end of the bulkhead's life; it is safe to call more
// than once and concurrently with updates, and does nothing for a
// strategy with its own CPUConfig.Usage. It always returns nil.
func (s *CPU) Close() error {
	if s.use.Swap(samplerClosed) == samplerAcquired {
		s.sampler.Release()
	}
	return nil
}

// Init implements [Strategy]: initial is the limit when the CPU is not
// busy, DefaultMaxLimit when initial is below 1. The statistics start
// empty.
func (s *CPU) Init(initial int) int {
	s.ceiling = initial
	if s.ceiling < 1 {
		s.ceiling = DefaultMaxLimit
	}
	s.lo = min(s.minLimit, s.ceiling)
	clear(s.ring)
	s.cur, s.started = 0, false
	s.maxPass, s.minRT, s.haveStats = 0, 0, false
	s.cpuHot, s.hotUntil = false, time.Time{}
	return s.ceiling
}

// Update implements [Strategy].
func (s *CPU) Update(sm Sample) int {
	s.advance(sm.Now)
	if !sm.Dropped {
		b := &s.ring[s.cur]
		b.pass++
		// A latency below 1ns (a coarse or simulated clock) counts as 1ns.
		b.rtSum += math.Max(float64(sm.RTT), 1)
	}
	if s.cpuHot {
		s.hotUntil = sm.Now.Add(s.coolOff)
	} else if s.hotUntil.Sub(sm.Now) > s.coolOff {
		s.hotUntil = sm.Now.Add(s.coolOff) // the clock went backwards
	}
	if !s.haveStats || !(s.cpuHot || sm.Now.Before(s.hotUntil)) {
		return s.ceiling
	}
	return s.bbrLimit()
}

// bbrLimit returns maxPass × minRT / bucket, rounded and clamped into
// [lo, ceiling].
func (s *CPU) bbrLimit() int {
	f := math.Floor(float64(s.maxPass)*s.minRT/float64(s.bucket) + 0.5)
	if !(f < float64(s.ceiling)) { // NaN and +Inf included
		return s.ceiling
	}
	return max(int(f), s.lo)
}

// advance moves the bucket ring to now, recomputing the statistics and
// reading the CPU usage when a bucket completes, and on the first sample.
// A clock that goes back by less than a bucket stays in the current
// bucket; one that goes back further (or returns from a jump forward)
// restarts the current bucket at now, so that the ring moves on again.
func (s *CPU) advance(now time.Time) {
	if !s.started {
		s.started, s.curStart = true, now
		s.readCPU()
		return
	}
	if now.Before(s.curStart.Add(-s.bucket)) {
		s.curStart = now
		s.readCPU()
		return
	}
	n := now.Sub(s.curStart) / s.bucket
	if n < 1 {
		return
	}
	s.curStart = s.curStart.Add(n * s.bucket)
	for range min(n, time.Duration(len(s.ring))) {
		s.cur = (s.cur + 1) % len(s.ring)
		s.ring[s.cur] = cpuBucket{}
	}
	s.maxPass, s.minRT, s.haveStats = 0, math.Inf(1), false
	for i, b := range s.ring {
		if i == s.cur || b.pass == 0 {
			continue
		}
		s.maxPass = max(s.maxPass, b.pass)
		s.minRT = math.Min(s.minRT, b.rtSum/float64(b.pass))
		s.haveStats = true
	}
	s.readCPU()
}

func (s *CPU) readCPU() {
	if s.sampler != nil {
		switch s.use.Load() {
		case samplerClosed:
			s.cpuHot = false
			return
		case samplerUnused:
			// Starts the sampler's goroutine, which takes the readings:
			// nothing is read here. Only Close changes use concurrently:
			// if it did, give the use back.
			s.sampler.Acquire()
			if !s.use.CompareAndSwap(samplerUnused, samplerAcquired) {
				s.sampler.Release()
				s.cpuHot = false
				return
			}
		}
	}
	u, known := s.usage()
	// NaN compares false: unknown, like known == false.
	s.cpuHot = known && min(u, 1) > s.threshold
}
