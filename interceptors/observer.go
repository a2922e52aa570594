package interceptors

import (
	"context"
	"fmt"
	"time"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
)

// Observer is told what the pipeline does, for spans, metrics and logs: one
// OnCallStart and OnCallEnd per logical call, one OnAttemptStart and
// OnAttemptEnd per attempt that reaches the invoker, and OnEvent for what
// happens in between (retries, rejections, budget denials, hedges,
// fallbacks, breaker transitions, cache evictions). Every field is
// optional: a nil hook is skipped at the cost of a nil check, and the zero
// Observer, the default, observes nothing. [telemetry.Telemetry.ClientObserver]
// fills every hook with spans, metrics and logs.
//
// The hooks run synchronously on the call's goroutine, except that the
// attempts of a hedged call run concurrently on goroutines of their own, and
// breaker transitions and evictions are reported on whichever goroutine
// caused them; the hooks must therefore be safe for concurrent use, and
// quick. They never run while the pipeline holds a lock.
//
// OnCallStart returns the context the call continues with, and
// OnAttemptStart the context the attempt is invoked with: an Observer puts
// its span there (the attempt's context goes to the invoker, so a
// propagator injects the attempt span's trace context into the attempt's
// headers). They must return their argument, or a context derived from it.
//
// Attempts that a breaker or bulkhead rejects never reach the invoker: they
// get no OnAttemptStart, only an EventBreakerRejected or
// EventBulkheadRejected on the call's context.
//
// [telemetry.Telemetry.ClientObserver]: https://pkg.go.dev/github.com/engineeringlabs/grpc-resilience/interceptors/telemetry#Telemetry.ClientObserver
type Observer struct {
	// OnCallStart is called when a logical call begins, before its default
	// timeout is set.
	OnCallStart func(ctx context.Context, info CallInfo) context.Context
	// OnCallEnd is called when the call ends with err (nil on success),
	// with info's Attempts and Fallback filled in. ctx is the one
	// OnCallStart returned.
	OnCallEnd func(ctx context.Context, info CallInfo, err error)
	// OnAttemptStart is called once the attempt holds its breaker permit
	// and bulkhead slot, just before the invoker.
	OnAttemptStart func(ctx context.Context, info AttemptInfo) context.Context
	// OnAttemptEnd is called when the invoker returned err for the
	// attempt, with the context OnAttemptStart returned and info's
	// Pushback filled in. err is as the retry engine sees it: a status
	// error, possibly a *StatusError for a per-attempt timeout.
	OnAttemptEnd func(ctx context.Context, info AttemptInfo, err error)
	// OnEvent reports something that happened during a call, on the
	// call's context; EventBreakerStateChange, EventEvicted and
	// EventOverflow have a context of their own.
	OnEvent func(ctx context.Context, e Event)
}

// observer returns a pointer to a copy of o, or nil when o has no hook, so
// that the pipeline skips every hook with one nil check.
func (o Observer) observer() *Observer {
	if o.OnCallStart == nil && o.OnCallEnd == nil && o.OnAttemptStart == nil && o.OnAttemptEnd == nil && o.OnEvent == nil {
		return nil
	}
	return &o
}

func (o *Observer) callStart(ctx context.Context, info CallInfo) context.Context {
	if o.OnCallStart != nil {
		return o.OnCallStart(ctx, info)
	}
	return ctx
}

func (o *Observer) callEnd(ctx context.Context, info CallInfo, err error) {
	if o.OnCallEnd != nil {
		o.OnCallEnd(ctx, info, err)
	}
}

func (o *Observer) attemptStart(ctx context.Context, info AttemptInfo) context.Context {
	if o.OnAttemptStart != nil {
		return o.OnAttemptStart(ctx, info)
	}
	return ctx
}

func (o *Observer) attemptEnd(ctx context.Context, info AttemptInfo, err error) {
	if o.OnAttemptEnd != nil {
		o.OnAttemptEnd(ctx, info, err)
	}
}

func (o *Observer) event(ctx context.Context, e Event) {
	if o.OnEvent != nil {
		o.OnEvent(ctx, e)
	}
}

// Pattern is the pattern that decides how many attempts a call makes.
type Pattern uint8

const (
	// PatternSingle makes one attempt: the method has neither retry nor
	// hedging, or the call disabled them.
	PatternSingle Pattern = iota
	// PatternRetry retries failed attempts.
	PatternRetry
	// PatternHedging sends hedged attempts.
	PatternHedging
)

var patternNames = [...]string{"single", "retry", "hedging"}

// String returns "single", "retry" or "hedging".
func (p Pattern) String() string {
	if int(p) < len(patternNames) {
		return patternNames[p]
	}
	return fmt.Sprintf("Pattern(%d)", uint8(p))
}

// CallInfo describes a logical call. It is plain data.
type CallInfo struct {
	// Method is the full method name, "/package.Service/Method".
	Method string
	// Target is the target of the call's connection, cc.Target().
	Target string
	// Pattern says whether the call retries, hedges or makes one attempt.
	Pattern Pattern
	// MaxAttempts is the most attempts the call may make, the first
	// included.
	MaxAttempts int
	// Idempotent is whether the call counts as idempotent.
	Idempotent bool
	// ClientStreams and ServerStreams say which sides of a stream carry
	// several messages, as in grpc.StreamDesc; both false for a unary
	// call.
	ClientStreams, ServerStreams bool
	// Attempts is how many attempts reached the invoker; set for CallEnd.
	Attempts int
	// Fallback reports that the fallback answered the call; set for
	// CallEnd.
	Fallback bool
}

// AttemptInfo describes one attempt. It is plain data.
type AttemptInfo struct {
	// Method is the full method name.
	Method string
	// Target is the target of the call's connection.
	Target string
	// Attempt is the attempt's number, from 1; Attempt-1 is the value of
	// its grpc-previous-rpc-attempts header.
	Attempt int
	// Delay is the wait before this attempt: the retry backoff or
	// pushback, or for a hedge the time since the previous attempt
	// started. Zero for the first attempt.
	Delay time.Duration
	// Hedge reports an extra attempt of a hedged call.
	Hedge bool
	// PushbackHonoured reports that Delay is what the server asked for
	// with pushback or RetryInfo, rather than the backoff's.
	PushbackHonoured bool
	// Breaker reports whether a breaker guards the attempt; BreakerState
	// is then the state it granted the attempt in, Closed or HalfOpen (a
	// probe).
	Breaker      bool
	BreakerState breaker.State
	// BulkheadWait is how long the attempt waited for a bulkhead slot.
	BulkheadWait time.Duration
	// Timeout is the attempt's own timeout; zero for none.
	Timeout time.Duration
	// Pushback is what the server said about retrying; set for
	// AttemptEnd.
	Pushback classify.Pushback
}

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EventRetry: a retry was decided after Attempt failed with Err; it
	// starts after Delay.
	EventRetry EventKind = iota + 1
	// EventRetriesExhausted: Attempt, the last one allowed, failed with a
	// retryable Err.
	EventRetriesExhausted
	// EventDeadline: the retry after Attempt was not made because its
	// wait, Delay, would end at or after the call's deadline.
	EventDeadline
	// EventBudgetDenied: the retry budget refused the retry or hedge
	// after Attempt.
	EventBudgetDenied
	// EventBreakerRejected: the breaker rejected Attempt without calling
	// the server; BreakerState is Open or HalfOpen, Err the rejection.
	EventBreakerRejected
	// EventBulkheadRejected: the bulkhead rejected Attempt; Err is the
	// rejection.
	EventBulkheadRejected
	// EventHedge: the hedge numbered Attempt starts, Delay after the
	// previous attempt.
	EventHedge
	// EventFallback: the fallback was asked to answer the call, which
	// failed with Err.
	EventFallback
	// EventBreakerStateChange: a breaker changed state; StateChange says
	// how. Its context is context.Background(), Method and Target are
	// empty: the breaker may be shared by several methods.
	EventBreakerStateChange
	// EventRateLimited: the client's rate limit refused Attempt; Err is
	// the *resilience.RateLimitedError.
	EventRateLimited
	// EventEvicted: a bounded cache of the client dropped an idle entry to
	// make room (see "Bounded state" in the package documentation). Cache
	// names the cache; Key, or Target and Method for the "state" cache,
	// the entry. Its context is context.Background().
	EventEvicted
	// EventOverflow: a bounded cache was full of busy entries, so the new
	// Key shares the cache's overflow breaker or bulkhead. Its context is
	// context.Background().
	EventOverflow
)

var eventNames = [...]string{"", "retry", "retries-exhausted", "deadline", "budget-denied", "breaker-rejected",
	"bulkhead-rejected", "hedge", "fallback", "breaker-state-change", "rate-limited", "evicted", "overflow"}

// String returns the kind's name in kebab case, for example
// "breaker-rejected".
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is something that happened during a call. It is plain data; which
// fields are set depends on Kind, as each kind says.
type Event struct {
	// Kind says what happened.
	Kind EventKind
	// Method and Target identify the call.
	Method, Target string
	// Attempt is the number of the attempt concerned.
	Attempt int
	// Delay is a wait, for EventRetry, EventDeadline and EventHedge.
	Delay time.Duration
	// Err is the error concerned.
	Err error
	// BreakerState is the breaker's state, for EventBreakerRejected.
	BreakerState breaker.State
	// StateChange is the transition, for EventBreakerStateChange.
	StateChange breaker.StateChange
	// Cache names the bounded cache of EventEvicted and EventOverflow:
	// "state" (a method on a target, with the breaker and bulkhead it
	// owns under ScopeMethod), "breaker" or "bulkhead" (shared by a
	// service or target), "ratelimit" or "budget" (a target's retry
	// budget).
	Cache string
	// Key is the cache key concerned, for EventEvicted and EventOverflow:
	// the scope key (target and method, service or target alone; target
	// and method for the "state" cache), or the target of a budget.
	Key string
}
