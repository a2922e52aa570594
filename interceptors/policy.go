package interceptors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	"github.com/engineeringlabs/grpc-resilience/retry"
)

// Policy says which resilience patterns apply to the calls of a method, a
// service or, as the default of a [Client], every call. It is plain data:
// [NewClient] copies it, so changing a Policy afterwards affects no client.
//
// Every field is optional; the zero Policy applies no pattern at all and
// the pipeline then calls the invoker once, unchanged. A nil sub-policy
// disables its pattern. The patterns run in this order, outermost first:
//
//	DefaultTimeout, Fallback, Hedging or Retry, Breaker, Bulkhead,
//	per-attempt timeout (Retry.AttemptTimeout), the call.
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
	// Bulkhead bounds the attempts in flight on the client. Nil: no
	// bulkhead.
	Bulkhead *BulkheadPolicy
	// DefaultTimeout is the deadline given to calls whose context has
	// none, covering every attempt and wait. Zero: calls without a
	// deadline keep none. Negative values are invalid.
	DefaultTimeout time.Duration
	// Idempotent says whether the method may run more than once with the
	// same effect. The default, IdempotencyFromDescriptor, reads the
	// method's idempotency_level from its proto descriptor
	// ([classify.Idempotent]). It decides which codes the default table
	// retries and whether hedging applies at all.
	Idempotent Idempotency
	// Fallback answers the call from a function when it fails with chosen
	// errors. Nil: no fallback.
	Fallback *FallbackPolicy
}

// RetryPolicy configures retries of failed attempts, after the retry
// engine ([retry.Policy]). The zero RetryPolicy is valid: 3 attempts,
// exponential backoff with full jitter, the default classification table,
// no per-attempt timeout, and the client's per-target budget.
type RetryPolicy struct {
	// MaxAttempts is the most attempts, the first included. Zero means 3.
	// Negative values are invalid.
	MaxAttempts int
	// Backoff computes the wait before each retry. Nil means
	// retry.Exponential(100ms, 10s, 2).
	Backoff retry.Backoff
	// Jitter randomises the backoff's waits. Nil means retry.FullJitter,
	// as gRPC's own retries; use retry.NoJitter for none. Waits the server
	// chose with pushback are never jittered.
	Jitter retry.Jitter
	// AttemptTimeout bounds each attempt, inside the caller's deadline.
	// An attempt that runs out of it ends with DEADLINE_EXCEEDED matching
	// *resilience.TimeoutError and is retried only for idempotent methods
	// (see classify.RetryIfAttemptTimeout). Zero: no per-attempt timeout.
	// Negative values are invalid. Streams do not use it.
	AttemptTimeout time.Duration
	// Budget limits retries across calls. Nil means the client's budget
	// for the call's target (see [WithTargetBudget]), shared by every
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

// HedgingPolicy configures hedging (gRFC A6): the first attempt starts at
// once, and while no answer has come, another one starts after Delay (or
// at the observed latency percentile), up to MaxExtraAttempts more. The
// first successful answer wins and the others are cancelled; an attempt
// that fails with a non-fatal code lets the next one start at once, and any
// other failure ends the call.
//
// Hedging applies only to idempotent methods (see [Policy.Idempotent]);
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

// BreakerPolicy configures the circuit breakers around attempts. The zero
// BreakerPolicy is valid: breaker.Config's defaults (open after 5
// consecutive failures, for 60s, close after 2 successful probes), one
// breaker per method and target, the default classification table.
type BreakerPolicy struct {
	// Config configures each breaker; see [breaker.Config] for its
	// defaults. Name is set to the breaker's key. Classify is not used:
	// Table decides. OnStateChange is called as documented there, and the
	// client's Observer also hears of every change.
	Config breaker.Config
	// Scope says which calls share a breaker: ScopeMethod (the default)
	// one per method and target, ScopeService one per service and target,
	// ScopeTarget one per target.
	Scope Scope
	// Table decides how each code counts for the breaker (its breaker
	// column). Nil means classify.Default().
	Table *classify.Table
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
// effect. The zero value is IdempotencyFromDescriptor.
type Idempotency uint8

const (
	// IdempotencyFromDescriptor reads the method's proto descriptor: it
	// is idempotent when its idempotency_level is IDEMPOTENT or
	// NO_SIDE_EFFECTS.
	IdempotencyFromDescriptor Idempotency = iota
	// Idempotent declares the method idempotent whatever its descriptor
	// says.
	Idempotent
	// NotIdempotent declares the method not idempotent whatever its
	// descriptor says.
	NotIdempotent
)

var idempotencyNames = [...]string{"from-descriptor", "idempotent", "not-idempotent"}

// String returns "from-descriptor", "idempotent" or "not-idempotent".
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

// Validate reports every invalid field of p, each error naming the field
// path and its value, joined with errors.Join; nil when p is valid.
func (p Policy) Validate() error {
	var errs []error
	bad := func(field string, value any, why string) {
		errs = append(errs, fmt.Errorf("%s: %v: %s", field, value, why))
	}
	if p.Retry != nil && p.Hedging != nil {
		errs = append(errs, fmt.Errorf("%s and %s: both set; they are alternatives per method (gRFC A6), set one", "Retry", "Hedging"))
	}
	if r := p.Retry; r != nil {
		if r.MaxAttempts < 0 {
			bad("Retry.MaxAttempts", r.MaxAttempts, "must not be negative")
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
		if err := b.Config.Validate(); err != nil {
			for _, e := range unjoin(err) {
				errs = append(errs, fmt.Errorf("Breaker.Config: %w", e))
			}
		}
		if b.Scope > ScopeTarget {
			bad("Breaker.Scope", b.Scope, "unknown scope")
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
	if p.DefaultTimeout < 0 {
		bad("DefaultTimeout", p.DefaultTimeout, "must not be negative")
	}
	if p.Idempotent > NotIdempotent {
		bad("Idempotent", p.Idempotent, "unknown idempotency")
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

// unjoin returns the errors joined in err, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
