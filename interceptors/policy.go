package interceptors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc/codes"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	"github.com/engineeringlabs/grpc-resilience/ratelimit"
	"github.com/engineeringlabs/grpc-resilience/retry"
	"github.com/engineeringlabs/grpc-resilience/throttle"
)

// Policy says which resilience patterns apply to the calls of a method, a
// service or, as the default of a [Client], every call. It is plain data:
// [NewClient] copies it, so changing a Policy afterwards affects no client.
//
// Every field is optional; the zero Policy applies no pattern at all and
// the pipeline then calls the invoker once, unchanged. A nil sub-policy
// disables its pattern. The patterns run in this order, outermost first:
//
//	DefaultTimeout, Fallback, Hedging or Retry, Breaker, Throttle,
//	RateLimit, Bulkhead, per-attempt timeout (Retry.AttemptTimeout), the
//	call.
//
// Retry and Hedging are alternatives, as in gRFC A6: setting both is a
// validation error. A per-method or per-service Policy replaces the
// default Policy as a whole; it is not merged with it.
type Policy struct {
	// Retry retries failed attempts with backoff. Nil: no retry.
	Retry *RetryPolicy
	// Hedging sends extra attempts while earlier ones are still running.
	// Nil: no hedging. Mutually exclusive with Retry.
	Hedging *HedgingPolicy
	// Breaker puts a circuit breaker around every attempt. Nil: no
	// breaker.
	Breaker *BreakerPolicy
	// Throttle rejects attempts on the client, before they are sent,
	// while the server refuses too many of them (adaptive throttling).
	// Nil: no throttle. It may be set with or without a Breaker.
	Throttle *ThrottlePolicy
	// Bulkhead bounds the attempts in flight on the client. Nil: no
	// bulkhead.
	Bulkhead *BulkheadPolicy
	// RateLimit bounds the rate of attempts the client sends. Nil: no
	// limit.
	RateLimit *RateLimitPolicy
	// DefaultTimeout is the deadline given to calls whose context has
	// none, covering every attempt and wait. Zero: calls without a
	// deadline keep none. Negative values are invalid.
	DefaultTimeout time.Duration
	// Idempotency says whether the method may run more than once with the
	// same effect. The default, FromDescriptor, reads the method's
	// idempotency_level from its proto descriptor
	// ([classify.IdempotentByDescriptor]). It decides which codes the
	// default table retries and whether hedging applies at all; see
	// "Idempotency" in the package documentation.
	Idempotency Idempotency
	// Fallback answers the call from a function when it fails with chosen
	// errors. Nil: no fallback.
	Fallback *FallbackPolicy
}

// RetryPolicy configures retries of failed attempts, after the retry
// engine ([retry.Policy]). The zero RetryPolicy is valid: 3 attempts,
// exponential backoff from 100ms to 10s with full jitter, the default
// classification table, no per-attempt timeout, and the client's per-target
// budget.
type RetryPolicy struct {
	// MaxAttempts is the most attempts, the first included. Zero means 3.
	// Negative values are invalid.
	MaxAttempts int
	// Backoff computes the wait before each retry. The zero Backoff is
	// exponential from 100ms, doubling, up to 10s.
	Backoff Backoff
	// Jitter randomises the backoff's waits. The zero value, JitterFull,
	// draws each wait uniformly from [0, backoff), as gRPC's own retries
	// do. Waits the server chose with pushback are never jittered.
	Jitter JitterKind
	// JitterFactor is the fraction for JitterProportional: each wait is
	// drawn from backoff × [1-JitterFactor, 1+JitterFactor]. Zero means
	// 0.2. It must be in [0, 1]; other jitters ignore it.
	JitterFactor float64
	// AttemptTimeout bounds each attempt, inside the caller's deadline.
	// An attempt that runs out of it ends with DEADLINE_EXCEEDED matching
	// *resilience.TimeoutError and is retried only for idempotent methods
	// (see classify.RetryIfAttemptTimeout). Zero: no per-attempt timeout.
	// Negative values are invalid. Streams do not use it.
	AttemptTimeout time.Duration
	// Budget limits retries across calls. Nil means the client's budget
	// for the call's target (see Config.TargetBudget), shared by every
	// method and policy that calls that target; [NoBudget] means no
	// budget at all; any other Budget is shared by every call this policy
	// governs.
	Budget retry.Budget
	// Table decides which codes are retried (its retry column). Nil means
	// classify.Default().
	Table *classify.Table
	// StreamBufferLimit bounds, in bytes of encoded size (proto.Size), the
	// messages a stream keeps to replay on a retry. A send that would
	// exceed it commits the stream: from then on it is not retried.
	// Zero means 256 KiB, gRPC's own default. Negative values are invalid.
	// Unary calls do not use it.
	StreamBufferLimit int
}

// BackoffKind selects a backoff strategy of the retry engine. The zero
// value is BackoffExponential.
type BackoffKind uint8

const (
	// BackoffExponential waits Initial, then Multiplier times longer each
	// retry, up to Max ([retry.Exponential]).
	BackoffExponential BackoffKind = iota
	// BackoffConstant waits Initial before every retry ([retry.Constant]).
	BackoffConstant
	// BackoffLinear waits Initial, then Step longer each retry, up to Max
	// ([retry.Linear]).
	BackoffLinear
	// BackoffFibonacci waits Initial times the Fibonacci numbers, up to Max
	// ([retry.Fibonacci]).
	BackoffFibonacci
	// BackoffDecorrelated is AWS's decorrelated jitter from Initial up to
	// Max ([retry.DecorrelatedJitter]); it is random by itself, so Jitter
	// is usually JitterNone with it.
	BackoffDecorrelated
	// BackoffDecorrelatedV2 is Polly's decorrelated jitter V2 with median
	// Initial, up to Max ([retry.DecorrelatedJitterV2]).
	BackoffDecorrelatedV2
)

var backoffNames = [...]string{"exponential", "constant", "linear", "fibonacci", "decorrelated", "decorrelated-v2"}

// String returns the kind's name, such as "exponential".
func (k BackoffKind) String() string {
	if int(k) < len(backoffNames) {
		return backoffNames[k]
	}
	return fmt.Sprintf("BackoffKind(%d)", uint8(k))
}

// Backoff describes the wait before each retry as data; the client turns it
// into a [retry.Backoff]. The zero Backoff is exponential from 100ms,
// doubling, up to 10s.
type Backoff struct {
	// Kind selects the strategy; the zero value is BackoffExponential.
	Kind BackoffKind
	// Initial is the first wait (the constant wait of BackoffConstant, the
	// median of BackoffDecorrelatedV2). Zero means 100ms. Negative values
	// are invalid.
	Initial time.Duration
	// Max caps every wait. Zero means 10s. It must not be below Initial.
	Max time.Duration
	// Multiplier is how much longer each exponential wait is than the one
	// before. Zero means 2. Values below 1 (other than zero) are invalid.
	Multiplier float64
	// Step is what each linear wait adds. Zero means Initial. Negative
	// values are invalid.
	Step time.Duration
}

// JitterKind selects how the backoff's waits are randomised. The zero
// value is JitterFull.
type JitterKind uint8

const (
	// JitterFull draws each wait uniformly from [0, backoff)
	// ([retry.FullJitter]).
	JitterFull JitterKind = iota
	// JitterNone waits exactly what the backoff says.
	JitterNone
	// JitterEqual draws each wait from [backoff/2, backoff)
	// ([retry.EqualJitter]).
	JitterEqual
	// JitterProportional draws each wait from backoff × [1-f, 1+f] for
	// RetryPolicy.JitterFactor f ([retry.ProportionalJitter]).
	JitterProportional
)

var jitterNames = [...]string{"full", "none", "equal", "proportional"}

// String returns the kind's name, such as "full".
func (k JitterKind) String() string {
	if int(k) < len(jitterNames) {
		return jitterNames[k]
	}
	return fmt.Sprintf("JitterKind(%d)", uint8(k))
}

// Defaults of the zero Backoff and JitterFactor.
const (
	defaultBackoffInitial    = 100 * time.Millisecond
	defaultBackoffMax        = 10 * time.Second
	defaultBackoffMultiplier = 2
	defaultJitterFactor      = 0.2
)

// backoff returns the retry engine's strategy for b, a validated Backoff.
func (b Backoff) backoff() retry.Backoff {
	initial, ceiling, mult, step := b.Initial, b.Max, b.Multiplier, b.Step
	if initial == 0 {
		initial = defaultBackoffInitial
	}
	if ceiling == 0 {
		ceiling = max(defaultBackoffMax, initial)
	}
	if mult == 0 {
		mult = defaultBackoffMultiplier
	}
	if step == 0 {
		step = initial
	}
	switch b.Kind {
	case BackoffConstant:
		return retry.Constant(initial)
	case BackoffLinear:
		return retry.Linear(initial, step, ceiling)
	case BackoffFibonacci:
		return retry.Fibonacci(initial, ceiling)
	case BackoffDecorrelated:
		return retry.DecorrelatedJitter(initial, ceiling)
	case BackoffDecorrelatedV2:
		return retry.DecorrelatedJitterV2(initial, ceiling)
	}
	return retry.Exponential(initial, ceiling, mult)
}

// jitter returns the retry engine's jitter for a validated RetryPolicy.
func (r *RetryPolicy) jitter() retry.Jitter {
	switch r.Jitter {
	case JitterNone:
		return retry.NoJitter
	case JitterEqual:
		return retry.EqualJitter
	case JitterProportional:
		f := r.JitterFactor
		if f == 0 {
			f = defaultJitterFactor
		}
		return retry.ProportionalJitter(f)
	}
	return retry.FullJitter
}

// HedgingPolicy configures hedging (gRFC A6): the first attempt starts at
// once, and while no answer has come, another one starts after Delay (or
// at the observed latency percentile), up to MaxExtraAttempts more. The
// first successful answer wins and the others are cancelled; an attempt
// that fails with a non-fatal code lets the next one start at once, and any
// other failure ends the call.
//
// Hedging applies only to idempotent methods (see [Policy.Idempotency]);
// calls of other methods run one attempt. The zero HedgingPolicy is valid:
// one extra attempt sent at once, every error fatal.
type HedgingPolicy struct {
	// MaxExtraAttempts is the most attempts sent besides the first. Zero
	// means 1. Negative values are invalid.
	MaxExtraAttempts int
	// Delay is the wait before each extra attempt, and the wait used
	// while fewer than MinSamples latencies are known when Percentile is
	// set. Zero sends extra attempts at once. Negative values are invalid.
	Delay time.Duration
	// Percentile, when set, makes the wait before each extra attempt the
	// observed latency at this percentile of successful attempts of the
	// method on the target, in (0, 100], for example 95. Zero: Delay
	// alone. Recent samples weigh more than old ones.
	Percentile float64
	// MinSamples is how many successful attempts must be observed before
	// Percentile takes over from Delay. Zero means 20. Negative values are
	// invalid.
	MinSamples int
	// NonFatalCodes are the codes after which hedging goes on: the next
	// attempt starts at once and the call waits for the others. Any other
	// code ends the call with that error, as in gRFC A6. Nil: every error
	// is fatal. OK is invalid here.
	NonFatalCodes []codes.Code
	// Budget limits extra attempts as RetryPolicy.Budget limits retries:
	// nil means the client's per-target budget, [NoBudget] none.
	Budget retry.Budget
}

// BreakerPolicy configures the circuit breakers around attempts, with
// the settings of [breaker.Config] under the names a gRPC user reads
// without ambiguity. The zero BreakerPolicy is valid: open after 5
// consecutive failures, for 60s, close after 2 successful probes; one
// breaker per method and target; the default classification table.
type BreakerPolicy struct {
	// FailureThreshold is the number of consecutive failures that opens
	// the breaker. Zero means 5, unless a rate threshold is set: then zero
	// disables this trigger. Negative values are invalid.
	FailureThreshold int
	// OpenDuration is how long the breaker stays open before it lets
	// probes through (breaker.Config.Timeout). Zero means 60s. Negative
	// values are invalid.
	OpenDuration time.Duration
	// OpenDurationMultiplier, when above 1, makes each consecutive opening
	// without a close in between last that much longer than the one
	// before, up to MaxOpenDuration ([breaker.ExponentialOpenDuration]).
	// Zero means a constant OpenDuration. Values below 1 other than zero
	// are invalid.
	OpenDurationMultiplier float64
	// MaxOpenDuration caps a growing open duration. Zero means ten times
	// OpenDuration. It must not be below OpenDuration.
	MaxOpenDuration time.Duration
	// SuccessThreshold is the number of successful probes that close the
	// breaker. Zero means 2. Negative values are invalid.
	SuccessThreshold int
	// MaxHalfOpenProbes is the number of probes let through at once while
	// half-open. Zero means SuccessThreshold. Negative values are invalid.
	MaxHalfOpenProbes int
	// WindowType selects the sliding window of the rate thresholds:
	// breaker.CountWindow (the zero value) or breaker.TimeWindow.
	WindowType breaker.WindowType
	// WindowSize is the number of calls a count window holds. Zero means
	// 100.
	WindowSize int
	// WindowPeriod is the period a time window covers, in WindowBuckets
	// buckets. Zero means 60s and 10 buckets.
	WindowPeriod  time.Duration
	WindowBuckets int
	// FailureRateThreshold is the failure rate in percent (0 < rate <=
	// 100) of the window's calls at or above which the breaker opens.
	// Zero: no rate threshold.
	FailureRateThreshold float64
	// SlowCallRateThreshold is the rate in percent of slow calls at or
	// above which the breaker opens; it needs SlowCallDuration. Zero: none.
	SlowCallRateThreshold float64
	// SlowCallDuration is the duration at or above which an attempt counts
	// as slow. Zero: attempts are never slow.
	SlowCallDuration time.Duration
	// MinimumCalls is the number of calls the window must hold before its
	// rates count. Zero means 10 (or WindowSize, if smaller).
	MinimumCalls int
	// ProbeTimeout bounds how long a half-open probe may hold its slot
	// without an outcome ([breaker.Config.ProbeTimeout]). Zero means the
	// breaker's default.
	ProbeTimeout time.Duration
	// Scope says which calls share a breaker: ScopeMethod (the default)
	// one per method and target, ScopeService one per service and target,
	// ScopeTarget one per target.
	Scope Scope
	// Table decides how each code counts for the breaker (its breaker
	// column). Nil means classify.Default().
	Table *classify.Table
}

// config returns the breaker engine's configuration for b.
func (b *BreakerPolicy) config() breaker.Config {
	cfg := breaker.Config{
		FailureThreshold:      b.FailureThreshold,
		Timeout:               b.OpenDuration,
		SuccessThreshold:      b.SuccessThreshold,
		MaxHalfOpenProbes:     b.MaxHalfOpenProbes,
		WindowType:            b.WindowType,
		WindowSize:            b.WindowSize,
		WindowPeriod:          b.WindowPeriod,
		WindowBuckets:         b.WindowBuckets,
		FailureRateThreshold:  b.FailureRateThreshold,
		SlowCallRateThreshold: b.SlowCallRateThreshold,
		SlowCallDuration:      b.SlowCallDuration,
		MinimumCalls:          b.MinimumCalls,
		ProbeTimeout:          b.ProbeTimeout,
	}
	if b.OpenDurationMultiplier > 1 {
		open := b.OpenDuration
		if open == 0 {
			open = breaker.DefaultTimeout
		}
		ceiling := b.MaxOpenDuration
		if ceiling == 0 {
			ceiling = 10 * open
		}
		cfg.OpenDurationFunc = breaker.ExponentialOpenDuration(open, ceiling, b.OpenDurationMultiplier)
	}
	return cfg
}

// breakerFields maps breaker.Config's field names to BreakerPolicy's, for
// the engine's validation errors.
var breakerFields = map[string]string{"Timeout": "OpenDuration"}

// ThrottlePolicy configures client-side adaptive throttling
// ([throttle.Throttle]), after "Handling Overload" in Google's SRE book:
// over a sliding window the client counts the attempts it makes and those
// the server accepts, and rejects each new attempt itself with probability
// max(0, (requests - K×accepts) / (requests + 1)), so that an overloaded
// server spends less of its capacity refusing work. The zero
// ThrottlePolicy is valid: K 2, a 10s window in 40 buckets, at least 20
// attempts in the window before any rejection, one attempt a second let
// through whatever the odds, one throttle per method and target, the
// breaker's classification table (or the default one). Package throttle says
// why these defaults.
//
// A throttled attempt fails at once with UNAVAILABLE matching
// resilience.ErrThrottled. Like a breaker's rejection it is not retried
// and does not count for the breaker; it counts as a request for the
// throttle, as the algorithm requires. An attempt the breaker rejects
// never reaches the throttle; one that the rate limit or the bulkhead
// further in refuses, or whose caller gave up, does not count at all.
type ThrottlePolicy struct {
	// K is how many times the attempts the server accepted the throttle
	// lets through before it starts rejecting. Zero means 2. Values below
	// 1 or above throttle.MaxK are invalid.
	K float64
	// Window is the history the counts cover, split into Buckets
	// buckets. Zero means 10s and 40 buckets. Negative values are
	// invalid, and so is a window that leaves a bucket less than 1ms.
	Window  time.Duration
	Buckets int
	// MinRequests is the number of attempts the window must hold before
	// the throttle rejects any. Zero means 20. Negative values are
	// invalid.
	MinRequests int
	// Scope says which calls share a throttle: ScopeMethod (the default)
	// one per method and target, ScopeService or ScopeTarget, as for
	// breakers.
	Scope Scope
	// PassInterval is how often the throttle lets an attempt through
	// whatever the odds, so that a recovered server is noticed even when
	// the rejection probability is close to 1. Zero means 1s. Negative
	// values are invalid.
	PassInterval time.Duration
	// Table decides how the server's answers count, by its breaker
	// column: a code it counts as a failure is a refusal, a code it
	// ignores does not count, any other code is an accept. Nil means the
	// policy's BreakerPolicy.Table when it has one, so that the breaker
	// and the throttle judge the server alike, or else classify.Default().
	Table *classify.Table
}

// config returns the throttle engine's configuration for t.
func (t *ThrottlePolicy) config() throttle.Config {
	return throttle.Config{K: t.K, Window: t.Window, Buckets: t.Buckets, MinRequests: t.MinRequests, PassInterval: t.PassInterval}
}

// BulkheadPolicy configures the client-side bulkheads that bound the
// attempts in flight. A rejected attempt fails with RESOURCE_EXHAUSTED
// matching resilience.ErrBulkheadFull; it is not retried and does not count
// for the breaker. A stream holds one slot from its first attempt until it
// ends, whatever the number of its attempts.
type BulkheadPolicy struct {
	// Limit is the most attempts in flight at once in one bulkhead. It
	// must be at least 1.
	Limit int
	// Queue is how many attempts may wait for a slot, in FIFO order.
	// Zero: none, an attempt that finds every slot taken is rejected at
	// once. Negative values are invalid.
	Queue int
	// MaxWait bounds the wait of a queued attempt; zero means the caller's
	// deadline alone. Negative values are invalid.
	MaxWait time.Duration
	// Scope says which calls share a bulkhead: ScopeMethod (the default),
	// ScopeService or ScopeTarget, as for breakers.
	Scope Scope
}

// RateLimitPolicy bounds the rate of attempts the client sends, with one
// GCRA limiter ([ratelimit.Keyed]) per scope key. An attempt over the rate
// fails at once, or waits for its permit when Wait is set, and fails with
// RESOURCE_EXHAUSTED matching resilience.ErrRateLimited (a
// *resilience.RateLimitedError whose RetryAfter says when the permit would
// come); it is not retried and does not count for the breaker, since no
// server was asked. Retries and hedges take permits like first attempts.
type RateLimitPolicy struct {
	// Rate is the most attempts per second per scope key, on average. It
	// must be positive.
	Rate float64
	// Burst is how many attempts may go at once after a quiet spell. Zero
	// means one second's worth, ceil(Rate). Negative values are invalid.
	Burst int
	// Wait makes an attempt over the rate wait for its permit, as long as
	// the permit comes before the call's deadline; an attempt whose permit
	// would come later fails at once, never after waiting in vain. False,
	// the default, fails at once.
	Wait bool
	// Scope says which calls share a limiter: ScopeMethod (the default)
	// one per method and target, ScopeService or ScopeTarget, as for
	// breakers.
	Scope Scope
}

// FallbackFunc answers a call that failed with err: it fills reply and
// returns nil, or returns an error (usually err itself) that the call then
// fails with. method is the full method name and req the request. ctx is
// the call's context, which may be done when the call's deadline was the
// cause. It must be safe for concurrent use.
type FallbackFunc func(ctx context.Context, method string, req, reply any, err error) error

// FallbackPolicy configures a fallback, the outermost pattern inside the
// default timeout: it sees the call's final error, after every retry.
type FallbackPolicy struct {
	// Func answers failed calls. It must not be nil.
	Func FallbackFunc
	// Codes are the codes that trigger the fallback. When both Codes and
	// If are nil they are UNAVAILABLE (which an open circuit returns),
	// RESOURCE_EXHAUSTED (a full bulkhead) and DEADLINE_EXCEEDED. OK is
	// invalid here.
	Codes []codes.Code
	// If, when set, triggers the fallback for errors it returns true for,
	// in addition to Codes. It must be safe for concurrent use.
	If func(err error) bool
}

// Scope says which calls share one breaker or bulkhead. The zero value is
// ScopeMethod.
type Scope uint8

const (
	// ScopeMethod shares one per full method name and target.
	ScopeMethod Scope = iota
	// ScopeService shares one per service and target.
	ScopeService
	// ScopeTarget shares one per target (cc.Target()).
	ScopeTarget
)

var scopeNames = [...]string{"method", "service", "target"}

// String returns "method", "service" or "target".
func (s Scope) String() string {
	if int(s) < len(scopeNames) {
		return scopeNames[s]
	}
	return fmt.Sprintf("Scope(%d)", uint8(s))
}

// Idempotency says whether a method may run more than once with the same
// effect. The zero value is FromDescriptor.
type Idempotency uint8

const (
	// FromDescriptor reads the method's proto descriptor: it is idempotent
	// when its idempotency_level is IDEMPOTENT or NO_SIDE_EFFECTS.
	FromDescriptor Idempotency = iota
	// AlwaysIdempotent declares the method idempotent whatever its
	// descriptor says.
	AlwaysIdempotent
	// NeverIdempotent declares the method not idempotent whatever its
	// descriptor says.
	NeverIdempotent
)

var idempotencyNames = [...]string{"from-descriptor", "always", "never"}

// String returns "from-descriptor", "always" or "never".
func (i Idempotency) String() string {
	if int(i) < len(idempotencyNames) {
		return idempotencyNames[i]
	}
	return fmt.Sprintf("Idempotency(%d)", uint8(i))
}

// NoBudget is a retry budget that allows every retry; set it as
// RetryPolicy.Budget or HedgingPolicy.Budget to exempt a policy from the
// client's per-target budget. It is safe for concurrent use.
var NoBudget retry.Budget = noBudget{}

type noBudget struct{}

func (noBudget) Record(int, retry.Outcome) {}
func (noBudget) AllowRetry() bool          { return true }

// Defaults of the zero fields.
const (
	defaultMaxAttempts = 3
	defaultMinSamples  = 20
)

// defaultFallbackCodes are the codes a FallbackPolicy with neither Codes
// nor If falls back on.
var defaultFallbackCodes = []codes.Code{codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded}

// maxCode is the highest code gRPC defines.
const maxCode = codes.Unauthenticated

// Validate reports every invalid field of p, each as a
// *resilience.FieldError naming the field path ("Retry.MaxAttempts") and
// its value, joined with errors.Join; nil when p is valid.
func (p Policy) Validate() error {
	var errs []error
	bad := func(field string, value any, why string) {
		errs = append(errs, &resilience.FieldError{Field: field, Value: value, Reason: why})
	}
	if p.Retry != nil && p.Hedging != nil {
		bad("Hedging", "set", "Retry is set too; they are alternatives per method (gRFC A6): set one")
	}
	if r := p.Retry; r != nil {
		if r.MaxAttempts < 0 {
			bad("Retry.MaxAttempts", r.MaxAttempts, "must not be negative")
		}
		validateBackoff(r.Backoff, bad)
		if r.Jitter > JitterProportional {
			bad("Retry.Jitter", r.Jitter, "unknown jitter")
		}
		if !(r.JitterFactor >= 0 && r.JitterFactor <= 1) {
			bad("Retry.JitterFactor", r.JitterFactor, "must be in [0, 1]")
		}
		if r.AttemptTimeout < 0 {
			bad("Retry.AttemptTimeout", r.AttemptTimeout, "must not be negative")
		}
		if r.StreamBufferLimit < 0 {
			bad("Retry.StreamBufferLimit", r.StreamBufferLimit, "must not be negative")
		}
	}
	if h := p.Hedging; h != nil {
		if h.MaxExtraAttempts < 0 {
			bad("Hedging.MaxExtraAttempts", h.MaxExtraAttempts, "must not be negative")
		}
		if h.Delay < 0 {
			bad("Hedging.Delay", h.Delay, "must not be negative")
		}
		if math.IsNaN(h.Percentile) || h.Percentile < 0 || h.Percentile > 100 {
			bad("Hedging.Percentile", h.Percentile, "must be in (0, 100], or 0 for none")
		}
		if h.MinSamples < 0 {
			bad("Hedging.MinSamples", h.MinSamples, "must not be negative")
		}
		for i, c := range h.NonFatalCodes {
			if c == codes.OK || c > maxCode {
				bad(fmt.Sprintf("Hedging.NonFatalCodes[%d]", i), c, "must be an error code gRPC defines")
			}
		}
	}
	if b := p.Breaker; b != nil {
		if !(b.OpenDurationMultiplier == 0 || b.OpenDurationMultiplier >= 1) {
			bad("Breaker.OpenDurationMultiplier", b.OpenDurationMultiplier, "must be at least 1, or 0 for a constant open duration")
		}
		if b.MaxOpenDuration < 0 || (b.MaxOpenDuration > 0 && b.MaxOpenDuration < b.OpenDuration) {
			bad("Breaker.MaxOpenDuration", b.MaxOpenDuration, "must not be below OpenDuration")
		}
		for _, fe := range resilience.FieldErrors(b.config().Validate()) {
			c := *fe
			if name, ok := breakerFields[c.Field]; ok {
				c.Field = name
			}
			errs = append(errs, c.Prefix("Breaker"))
		}
		if b.Scope > ScopeTarget {
			bad("Breaker.Scope", b.Scope, "unknown scope")
		}
	}
	if t := p.Throttle; t != nil {
		for _, fe := range resilience.FieldErrors(t.config().Validate()) {
			errs = append(errs, fe.Prefix("Throttle"))
		}
		if t.Scope > ScopeTarget {
			bad("Throttle.Scope", t.Scope, "unknown scope")
		}
	}
	if b := p.Bulkhead; b != nil {
		if b.Limit < 1 {
			bad("Bulkhead.Limit", b.Limit, "must be at least 1")
		}
		if b.Queue < 0 {
			bad("Bulkhead.Queue", b.Queue, "must not be negative")
		}
		if b.MaxWait < 0 {
			bad("Bulkhead.MaxWait", b.MaxWait, "must not be negative")
		}
		if b.Scope > ScopeTarget {
			bad("Bulkhead.Scope", b.Scope, "unknown scope")
		}
	}
	if l := p.RateLimit; l != nil {
		if !(l.Rate > 0 && l.Rate <= ratelimit.MaxRate) {
			bad("RateLimit.Rate", l.Rate, fmt.Sprintf("must be a positive number of attempts per second, at most %g", ratelimit.MaxRate))
		}
		if l.Burst < 0 {
			bad("RateLimit.Burst", l.Burst, "must not be negative")
		}
		if l.Scope > ScopeTarget {
			bad("RateLimit.Scope", l.Scope, "unknown scope")
		}
	}
	if p.DefaultTimeout < 0 {
		bad("DefaultTimeout", p.DefaultTimeout, "must not be negative")
	}
	switch {
	case p.Idempotency > NeverIdempotent:
		bad("Idempotency", p.Idempotency, "unknown idempotency")
	case p.Idempotency == NeverIdempotent && p.Hedging != nil:
		bad("Hedging", "set", "Idempotency is NeverIdempotent, so hedging would make one attempt")
	}
	if f := p.Fallback; f != nil {
		if f.Func == nil {
			bad("Fallback.Func", "nil", "must be set")
		}
		for i, c := range f.Codes {
			if c == codes.OK || c > maxCode {
				bad(fmt.Sprintf("Fallback.Codes[%d]", i), c, "must be an error code gRPC defines")
			}
		}
	}
	return errors.Join(errs...)
}

// validateBackoff reports the invalid fields of a RetryPolicy's Backoff.
func validateBackoff(b Backoff, bad func(field string, value any, why string)) {
	if b.Kind > BackoffDecorrelatedV2 {
		bad("Retry.Backoff.Kind", b.Kind, "unknown backoff")
	}
	if b.Initial < 0 {
		bad("Retry.Backoff.Initial", b.Initial, "must not be negative")
	}
	if b.Max < 0 || (b.Max > 0 && b.Max < b.Initial) {
		bad("Retry.Backoff.Max", b.Max, "must not be below Initial")
	}
	if !(b.Multiplier == 0 || b.Multiplier >= 1) || math.IsInf(b.Multiplier, 0) {
		bad("Retry.Backoff.Multiplier", b.Multiplier, "must be a finite number of at least 1, or 0 for 2")
	}
	if b.Step < 0 {
		bad("Retry.Backoff.Step", b.Step, "must not be negative")
	}
}
