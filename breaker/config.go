package breaker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// Defaults used for zero fields of [Config].
const (
	// DefaultFailureThreshold is the number of consecutive failures that
	// opens the breaker when Config.FailureThreshold is zero and no rate
	// threshold is set.
	DefaultFailureThreshold = 5
	// DefaultTimeout is how long the breaker stays open when
	// Config.Timeout is zero.
	DefaultTimeout = 60 * time.Second
	// DefaultSuccessThreshold is the number of half-open successes that
	// close the breaker when Config.SuccessThreshold is zero.
	DefaultSuccessThreshold = 2
	// DefaultWindowSize is the number of calls a count-based window holds
	// when Config.WindowSize is zero.
	DefaultWindowSize = 100
	// DefaultWindowPeriod is the period a time-based window covers when
	// Config.WindowPeriod is zero.
	DefaultWindowPeriod = 60 * time.Second
	// DefaultWindowBuckets is the number of buckets a time-based window
	// splits its period into when Config.WindowBuckets is zero.
	DefaultWindowBuckets = 10
	// DefaultMinimumCalls is the number of calls a window must hold before
	// its rates count, when Config.MinimumCalls is zero (a count-based
	// window smaller than that uses its size instead).
	DefaultMinimumCalls = 10
	// DefaultProbeTimeout is the least time a half-open probe keeps its
	// slot when Config.ProbeTimeout is zero: the default is the larger of
	// the open duration Config.Timeout (its default included) and this.
	DefaultProbeTimeout = 10 * time.Second
	// MaxWindowSize is the largest Config.WindowSize.
	MaxWindowSize = 1 << 20
	// MaxWindowBuckets is the largest Config.WindowBuckets.
	MaxWindowBuckets = 1 << 16
)

// WindowType selects how the sliding window of a breaker forgets old calls.
// The zero value is [CountWindow].
type WindowType uint8

const (
	// CountWindow holds the last Config.WindowSize calls.
	CountWindow WindowType = iota
	// TimeWindow holds the calls of the last Config.WindowPeriod, in
	// Config.WindowBuckets buckets: a bucket's calls leave the window all at
	// once, when the bucket falls out of the period.
	TimeWindow
)

// String returns "count" or "time".
func (w WindowType) String() string {
	switch w {
	case CountWindow:
		return "count"
	case TimeWindow:
		return "time"
	}
	return fmt.Sprintf("WindowType(%d)", uint8(w))
}

// Config configures a [Breaker]. It is plain data: [New] copies it, so
// changing a Config afterwards does not affect the breaker, and a Config
// may be shared by goroutines that only read it. The function fields must
// be safe for concurrent use, as each says.
//
// Every field has a default for its zero value, so Config{} is a working
// configuration: it opens after 5 consecutive failures, stays open 60s and
// closes after 2 successful probes.
//
// [New] never fails: a field that [Config.Validate] rejects is treated as if
// it were zero, that is, it gets its default. Call Validate first to catch
// such mistakes, for example when the values come from a configuration file.
type Config struct {
	// Name identifies the breaker in errors and events. A [Registry] sets
	// it to the breaker's key. Default: "" (errors then say just
	// "breaker").
	Name string

	// FailureThreshold is the number of consecutive failures (in the
	// closed state) that opens the breaker. Zero means the default,
	// [DefaultFailureThreshold] (5), unless FailureRateThreshold or
	// SlowCallRateThreshold is set: then zero disables this trigger and the
	// window alone decides. Negative values are invalid. Outcomes count in
	// the order they are recorded: a success ends the run, and of outcomes
	// recorded at the same moment by concurrent calls, any order may be
	// taken.
	FailureThreshold int

	// Timeout is how long the breaker stays open before it half-opens,
	// when OpenDurationFunc is nil. Zero means [DefaultTimeout] (60s). Negative
	// values are invalid.
	Timeout time.Duration

	// SuccessThreshold is the number of successful half-open probes that
	// close the breaker. Any failed probe opens it again. Zero means
	// [DefaultSuccessThreshold] (2). Negative values are invalid.
	SuccessThreshold int

	// MaxHalfOpenProbes is the number of probe calls the half-open breaker
	// lets run at the same time; it rejects further calls (with an error
	// matching [resilience.ErrCircuitOpen]) rather than queueing them. A
	// probe frees its slot when its outcome is recorded. Zero means
	// SuccessThreshold. Negative values are invalid.
	MaxHalfOpenProbes int

	// ProbeTimeout bounds how long a half-open probe holds its slot
	// without its outcome being recorded. A probe slot held longer is
	// reclaimed, so that a permit lost by its caller (never recorded) cannot
	// keep a half-open breaker from admitting probes for ever: the next
	// call takes the slot as a new probe, and the late outcome of the old
	// one, if it ever comes, is discarded (counted in Metrics.Discarded,
	// reported with Result.Discarded). Zero means the larger of Timeout
	// (its default included) and [DefaultProbeTimeout] (10s): 60s for the
	// zero Config. Negative values are invalid. Set it above the longest
	// call a probe may legitimately make.
	ProbeTimeout time.Duration

	// WindowType selects the sliding window: [CountWindow] (the zero value)
	// or [TimeWindow]. The window is kept only when FailureRateThreshold or
	// SlowCallRateThreshold is set.
	WindowType WindowType

	// WindowSize is the number of calls a count-based window holds. Zero
	// means [DefaultWindowSize] (100). Negative values and values above
	// [MaxWindowSize] are invalid.
	WindowSize int

	// WindowPeriod is the period a time-based window covers. Zero means
	// [DefaultWindowPeriod] (60s). Each bucket covers
	// WindowPeriod/WindowBuckets, truncated to the nanosecond; the period
	// must leave each bucket at least 1ns. Negative values are invalid.
	WindowPeriod time.Duration

	// WindowBuckets is the number of buckets a time-based window splits its
	// period into. Zero means [DefaultWindowBuckets] (10). Negative values
	// and values above [MaxWindowBuckets] are invalid.
	WindowBuckets int

	// FailureRateThreshold is the failure rate, in percent of the calls in
	// the window (0 < rate <= 100), at or above which the breaker opens.
	// Ignored calls are not in the window. Zero means disabled. Negative
	// values, NaN and values above 100 are invalid.
	FailureRateThreshold float64

	// SlowCallRateThreshold is the rate of slow calls, in percent of the
	// calls in the window (0 < rate <= 100), at or above which the breaker
	// opens. It requires SlowCallDuration. When it is set, a slow
	// successful half-open probe counts as a failed probe. Zero means
	// disabled. Negative values, NaN and values above 100 are invalid.
	SlowCallRateThreshold float64

	// MinimumCalls is the number of calls the window must hold before its
	// rates are compared with the thresholds. Zero means
	// [DefaultMinimumCalls] (10), or WindowSize for a count-based window of
	// fewer calls. Negative values are invalid, and so are values above
	// WindowSize for a count-based window (it could never trip).
	MinimumCalls int

	// SlowCallDuration is the duration at or above which a call counts as
	// slow, measured from [Breaker.Allow] to the outcome's record (or given
	// explicitly with [Permit.DoneDuration]). A slow call counts as slow
	// and as whatever its outcome was. Zero means calls are never slow.
	// Negative values are invalid, and so is zero when
	// SlowCallRateThreshold is set.
	SlowCallDuration time.Duration

	// OpenDurationFunc, when not nil, gives how long the breaker stays open,
	// from the number of times it opened since it last closed (1 the first
	// time, 2 when the first probes failed, and so on). It replaces Timeout
	// for adaptive open durations; see [ExponentialOpenDuration]. A result
	// of zero or less means Timeout. It is called with the breaker's lock
	// held, so it must be fast and must not call the breaker.
	OpenDurationFunc func(consecutiveOpens int) time.Duration

	// Classify maps the error of a call to its outcome, for
	// [Breaker.Execute] and [Permit.Record]. Nil means [DefaultClassify]:
	// nil is a success, context.Canceled is ignored, anything else is a
	// failure. It may be called concurrently.
	Classify func(err error) Outcome

	// OnStateChange, when not nil, is called after every change of state
	// or mode, in the order the changes happened, one call at a time and
	// never while the breaker holds a lock, so it may call the breaker.
	// The call may happen on the goroutine of another caller that is
	// delivering events at that moment, and after the method that caused
	// the change returned. A panic in it propagates to the caller that was
	// delivering; the events still queued are delivered with the next
	// change.
	OnStateChange func(StateChange)

	// OnReject, when not nil, is called for every call the breaker
	// rejects, with the error the caller receives. It may be called
	// concurrently and is never called while the breaker holds a lock.
	OnReject func(err *OpenError)

	// OnResult, when not nil, is called for every outcome recorded on a
	// permit, discarded ones included. It may be called concurrently and
	// is never called while the breaker holds a lock. It is on the hot
	// path: keep it cheap.
	OnResult func(Result)
}

// Coordinator joins a breaker to decisions taken outside it, for example by
// the other processes of a fleet that share the breaker's state (package
// redisfleet). Attach one with [Breaker.Coordinate]. It is plain data: the
// breaker copies it. Both fields may be nil.
type Coordinator struct {
	// OnStateChange, when not nil, is called after every change of state
	// or mode, as Config.OnStateChange is (in order, one call at a time,
	// never while the breaker holds a lock) and after it. It must be quick
	// and must not wait: hand the change to another goroutine rather than
	// doing network I/O in it.
	OnStateChange func(StateChange)

	// AllowHalfOpen, when not nil, gates the move from open to half-open:
	// when the open duration of an auto-open breaker ran out, the breaker
	// half-opens only if it returns true. False keeps the breaker open,
	// rejecting calls (the rejections' [OpenError.Remaining] and
	// Metrics.OpenRemaining are then 0), and the breaker asks again on a
	// later call, [Breaker.State] or [Breaker.Metrics]. It is never called
	// in the closed state, so it costs nothing on the hot path. It is
	// called on the caller's goroutine, concurrently, without the
	// breaker's lock: it must be safe for concurrent use, fast, and must
	// not block.
	AllowHalfOpen func() bool
}

// StateChange describes a transition of a breaker, for
// Config.OnStateChange. It is plain data.
type StateChange struct {
	// Name is the breaker's Config.Name.
	Name string
	// From and To are the states before and after. They are equal when
	// only the mode changed (for example ForceClosed on a closed breaker).
	From, To State
	// Mode is the mode after the change.
	Mode Mode
	// Reason tells why the breaker changed.
	Reason Reason
	// OpenFor is how long the breaker stays open, when To is [Open] and
	// Mode is [Auto]; zero otherwise.
	OpenFor time.Duration
}

// Result describes an outcome recorded on a permit, for Config.OnResult.
// It is plain data.
type Result struct {
	// Name is the breaker's Config.Name.
	Name string
	// State is the state the permit was granted in: [Closed] or
	// [HalfOpen] (a probe).
	State State
	// Outcome is the recorded outcome.
	Outcome Outcome
	// Duration is the call's duration as the breaker measured it (from
	// Allow to the record) or as given to [Permit.DoneDuration]; zero when
	// the breaker does not measure durations (SlowCallDuration unset).
	Duration time.Duration
	// Slow reports whether the call counted as slow.
	Slow bool
	// Discarded reports that the breaker changed state after the permit
	// was granted, so the outcome counted for nothing.
	Discarded bool
}

// DefaultClassify is the classification used when Config.Classify is nil: a
// nil error is a [Success], an error matching context.Canceled is
// [Ignored] (the caller gave up, which says nothing about the service), and
// any other error is a [Failure]. context.DeadlineExceeded is a failure: a
// service too slow for its callers' deadlines is not healthy.
func DefaultClassify(err error) Outcome {
	switch {
	case err == nil:
		return Success
	case errors.Is(err, context.Canceled):
		return Ignored
	}
	return Failure
}

// ExponentialOpenDuration returns a generator for Config.OpenDurationFunc that
// starts at initial and multiplies the open duration by multiplier each
// time the breaker opens again without having closed, capped at ceiling:
// initial × multiplier^(consecutiveOpens-1), at most ceiling.
//
// An initial of zero or less is treated as [DefaultTimeout]; a ceiling
// below initial is treated as initial; a multiplier below 1, or NaN, is
// treated as 1 (a constant duration). consecutiveOpens below 1 gives
// initial. The generator never overflows and is safe for concurrent use.
func ExponentialOpenDuration(initial, ceiling time.Duration, multiplier float64) func(consecutiveOpens int) time.Duration {
	if initial <= 0 {
		initial = DefaultTimeout
	}
	if ceiling < initial {
		ceiling = initial
	}
	if !(multiplier >= 1) {
		multiplier = 1
	}
	return func(consecutiveOpens int) time.Duration {
		if consecutiveOpens <= 1 || multiplier == 1 {
			return initial
		}
		d := float64(initial) * math.Pow(multiplier, float64(consecutiveOpens-1))
		// float64(ceiling) may round up past MaxInt64; d below it
		// converts back exactly enough and without overflow.
		if !(d < float64(ceiling)) {
			return ceiling
		}
		return time.Duration(d)
	}
}

// Validate reports every invalid field of c, each as a
// *[resilience.FieldError] whose Field is the field's Go name (for example
// "FailureThreshold"), joined with [errors.Join]; nil when c is valid.
// [New] treats an invalid field as zero, that is, as its default.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, value any, reason string) {
		errs = append(errs, &resilience.FieldError{Field: field, Value: value, Reason: reason})
	}
	const notNegative = "must not be negative"
	if c.FailureThreshold < 0 {
		bad("FailureThreshold", c.FailureThreshold, notNegative)
	}
	if c.Timeout < 0 {
		bad("Timeout", c.Timeout, notNegative)
	}
	if c.SuccessThreshold < 0 {
		bad("SuccessThreshold", c.SuccessThreshold, notNegative)
	}
	if c.MaxHalfOpenProbes < 0 {
		bad("MaxHalfOpenProbes", c.MaxHalfOpenProbes, notNegative)
	}
	if c.ProbeTimeout < 0 {
		bad("ProbeTimeout", c.ProbeTimeout, notNegative)
	}
	if c.WindowType > TimeWindow {
		bad("WindowType", c.WindowType, "must be CountWindow or TimeWindow")
	}
	if c.WindowSize < 0 || c.WindowSize > MaxWindowSize {
		bad("WindowSize", c.WindowSize, fmt.Sprintf("must be between 0 and %d", MaxWindowSize))
	}
	if c.WindowBuckets < 0 || c.WindowBuckets > MaxWindowBuckets {
		bad("WindowBuckets", c.WindowBuckets, fmt.Sprintf("must be between 0 and %d", MaxWindowBuckets))
	}
	if c.WindowPeriod < 0 {
		bad("WindowPeriod", c.WindowPeriod, notNegative)
	} else if _, ok := bucketDuration(c.WindowPeriod, c.WindowBuckets); !ok {
		bad("WindowPeriod", c.WindowPeriod, "must leave each of the WindowBuckets buckets at least 1ns")
	}
	if !validRate(c.FailureRateThreshold) {
		bad("FailureRateThreshold", c.FailureRateThreshold, "must be a percentage between 0 and 100")
	}
	if !validRate(c.SlowCallRateThreshold) {
		bad("SlowCallRateThreshold", c.SlowCallRateThreshold, "must be a percentage between 0 and 100")
	}
	if c.MinimumCalls < 0 {
		bad("MinimumCalls", c.MinimumCalls, notNegative)
	} else if c.WindowType == CountWindow && c.MinimumCalls > windowSize(c.WindowSize) {
		bad("MinimumCalls", c.MinimumCalls, fmt.Sprintf("must be at most WindowSize (%d) for a count-based window", windowSize(c.WindowSize)))
	}
	if c.SlowCallDuration < 0 {
		bad("SlowCallDuration", c.SlowCallDuration, notNegative)
	} else if c.SlowCallDuration == 0 && c.SlowCallRateThreshold > 0 {
		bad("SlowCallDuration", c.SlowCallDuration, "must be positive when SlowCallRateThreshold is set")
	}
	return errors.Join(errs...)
}

func validRate(r float64) bool { return r >= 0 && r <= 100 }

// windowSize returns the effective count-window size for the field value n.
func windowSize(n int) int {
	if n <= 0 || n > MaxWindowSize {
		return DefaultWindowSize
	}
	return n
}

// bucketDuration returns the duration of one bucket of a time-based window
// for the field values period and buckets (zero or invalid meaning their
// defaults), and whether period leaves each bucket at least 1ns.
func bucketDuration(period time.Duration, buckets int) (time.Duration, bool) {
	if period <= 0 {
		period = DefaultWindowPeriod
	}
	if buckets <= 0 || buckets > MaxWindowBuckets {
		buckets = DefaultWindowBuckets
	}
	d := period / time.Duration(buckets)
	return d, d > 0
}

// settings is a normalized, immutable Config: every default applied, every
// invalid value replaced by its default.
type settings struct {
	name             string
	failureThreshold int64 // 0: the consecutive trigger is off
	timeout          time.Duration
	successThreshold int
	maxProbes        int
	probeTimeout     time.Duration
	windowType       WindowType
	windowed         bool // a rate threshold is set: keep a window
	defaultClassify  bool // classify is DefaultClassify: a nil error is a Success
	windowSize       int
	buckets          int
	bucketDur        time.Duration
	failureRate      float64 // percent; 0: off
	slowRate         float64 // percent; 0: off
	minCalls         int64
	slowDur          time.Duration // 0: calls are never slow
	openDuration     func(int) time.Duration
	classify         func(error) Outcome
	onStateChange    func(StateChange)
	onReject         func(*OpenError)
	onResult         func(Result)
}

func (c Config) settings() settings {
	s := settings{
		name:          c.Name,
		timeout:       c.Timeout,
		openDuration:  c.OpenDurationFunc,
		classify:      c.Classify,
		onStateChange: c.OnStateChange,
		onReject:      c.OnReject,
		onResult:      c.OnResult,
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.classify == nil {
		s.classify = DefaultClassify
		s.defaultClassify = true
	}
	s.successThreshold = c.SuccessThreshold
	if s.successThreshold <= 0 {
		s.successThreshold = DefaultSuccessThreshold
	}
	s.maxProbes = c.MaxHalfOpenProbes
	if s.maxProbes <= 0 {
		s.maxProbes = s.successThreshold
	}
	s.probeTimeout = c.ProbeTimeout
	if s.probeTimeout <= 0 {
		s.probeTimeout = max(s.timeout, DefaultProbeTimeout)
	}
	if c.SlowCallDuration > 0 {
		s.slowDur = c.SlowCallDuration
	}
	if validRate(c.FailureRateThreshold) {
		s.failureRate = c.FailureRateThreshold
	}
	if validRate(c.SlowCallRateThreshold) && s.slowDur > 0 {
		s.slowRate = c.SlowCallRateThreshold
	}
	s.windowed = s.failureRate > 0 || s.slowRate > 0
	switch {
	case c.FailureThreshold > 0:
		s.failureThreshold = int64(c.FailureThreshold)
	case !s.windowed:
		s.failureThreshold = DefaultFailureThreshold
	}
	if c.WindowType <= TimeWindow {
		s.windowType = c.WindowType
	}
	s.windowSize = windowSize(c.WindowSize)
	s.buckets = c.WindowBuckets
	if s.buckets <= 0 || s.buckets > MaxWindowBuckets {
		s.buckets = DefaultWindowBuckets
	}
	var ok bool
	if s.bucketDur, ok = bucketDuration(c.WindowPeriod, s.buckets); !ok {
		s.bucketDur, _ = bucketDuration(DefaultWindowPeriod, s.buckets)
	}
	minCalls := c.MinimumCalls
	if minCalls <= 0 || (s.windowType == CountWindow && minCalls > s.windowSize) {
		minCalls = min(DefaultMinimumCalls, s.windowSize)
		if s.windowType == TimeWindow {
			minCalls = DefaultMinimumCalls
		}
	}
	s.minCalls = int64(minCalls)
	return s
}
