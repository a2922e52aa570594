package interceptors

import (
	"context"
	"fmt"
	"time"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
)

// Observer is told what the pipeline does, for spans, metrics and logs: one
// CallStart and CallEnd per logical call, one AttemptStart and AttemptEnd
// per attempt that reaches the invoker, and Events in between (retries,
// rejections, budget denials, hedges, fallbacks, breaker transitions).
//
// The methods run synchronously on the call's goroutine, except that the
// attempts of a hedged call run concurrently on goroutines of their own, and
// breaker transitions are reported on whichever goroutine caused them; an
// Observer must therefore be safe for concurrent use, and quick.
//
// CallStart returns the context the call continues with, and AttemptStart
// the context the attempt is invoked with: an Observer puts its span there
// (the attempt's context goes to the invoker, so a propagator injects the
// attempt span's trace context into the attempt's headers). An Observer must
// return its argument, or a context derived from it.
//
// Attempts that a breaker or bulkhead rejects never reach the invoker: they
// get no AttemptStart, only an EventBreakerRejected or EventBulkheadRejected
// on the call's context.
//
// Embed [NopObserver] to implement only some methods. With no Observer
// configured (the default) the pipeline skips every hook at the cost of a
// nil check.
type Observer interface {
	// CallStart is called when a logical call begins, before its default
	// timeout is set.
	CallStart(ctx context.Context, info CallInfo) context.Context
	// CallEnd is called when the call ends with err (nil on success), with
	// info's Attempts and Fallback filled in. ctx is the one CallStart
	// returned.
	CallEnd(ctx context.Context, info CallInfo, err error)
	// AttemptStart is called once the attempt holds its breaker permit
	// and bulkhead slot, just before the invoker.
	AttemptStart(ctx context.Context, info AttemptInfo) context.Context
	// AttemptEnd is called when the invoker returned err for the attempt,
	// with the context AttemptStart returned and info's Pushback filled in.
	// err is as the retry engine sees it: a status error, possibly a
	// *StatusError for a per-attempt timeout.
	AttemptEnd(ctx context.Context, info AttemptInfo, err error)
	// Event reports something that happened during a call, on the call's
	// context; EventBreakerStateChange has a context of its own.
	Event(ctx context.Context, e Event)
}

// NopObserver is an Observer that does nothing; embed it in an Observer
// that needs only some of the methods. Its zero value is ready to use.
type NopObserver struct{}

var _ Observer = NopObserver{}

// CallStart returns ctx.
func (NopObserver) CallStart(ctx context.Context, _ CallInfo) context.Context { return ctx }

// CallEnd does nothing.
func (NopObserver) CallEnd(context.Context, CallInfo, error) {}

// AttemptStart returns ctx.
func (NopObserver) AttemptStart(ctx context.Context, _ AttemptInfo) context.Context { return ctx }

// AttemptEnd does nothing.
func (NopObserver) AttemptEnd(context.Context, AttemptInfo, error) {}

// Event does nothing.
func (NopObserver) Event(context.Context, Event) {}

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
)

var eventNames = [...]string{"", "retry", "retries-exhausted", "deadline", "budget-denied", "breaker-rejected",
	"bulkhead-rejected", "hedge", "fallback", "breaker-state-change"}

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
}
