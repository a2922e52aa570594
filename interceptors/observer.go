package interceptors

import (
	"context"
	"fmt"
	"slices"
	"sync"
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
// fills every hook with spans, metrics and logs. [Client.Subscribe] adds
// observers to a running Client.
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
// Attempts that a breaker, throttle, rate limit or bulkhead rejects never
// reach the invoker: they get no OnAttemptStart, only an
// EventBreakerRejected, EventThrottled, EventRateLimited or
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
	// Key shares the cache's overflow breaker, throttle or bulkhead. Its context is
	// context.Background().
	EventOverflow
	// EventThrottled: the client's adaptive throttle rejected Attempt
	// without sending it; Err is the rejection (resilience.ErrThrottled)
	// and Probability the rejection probability it drew against.
	EventThrottled
)

var eventNames = [...]string{"", "retry", "retries-exhausted", "deadline", "budget-denied", "breaker-rejected",
	"bulkhead-rejected", "hedge", "fallback", "breaker-state-change", "rate-limited", "evicted", "overflow", "throttled"}

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
	// PushbackHonoured reports, for EventRetry, that Delay is what the
	// server asked for (gRPC's pushback or a RetryInfo), not the backoff's.
	PushbackHonoured bool
	// Err is the error concerned.
	Err error
	// BreakerState is the breaker's state, for EventBreakerRejected.
	BreakerState breaker.State
	// Probability is the throttle's rejection probability, for
	// EventThrottled.
	Probability float64
	// StateChange is the transition, for EventBreakerStateChange.
	StateChange breaker.StateChange
	// Cache names the bounded cache of EventEvicted and EventOverflow:
	// "state" (a method on a target, with the breaker and bulkhead it
	// owns under ScopeMethod), "breaker", "throttle" or "bulkhead"
	// (shared by a service or target), "ratelimit" or "budget" (a
	// target's retry budget).
	Cache string
	// Key is the cache key concerned, for EventEvicted and EventOverflow:
	// the scope key (target and method, service or target alone; target
	// and method for the "state" cache), or the target of a budget.
	Key string
}

// Subscribe adds o to the hooks the client's calls run, after
// Config.Observer and the observers subscribed before it, until cancel is
// called; cancel is idempotent and safe for concurrent use. Several
// observers may be subscribed at once, for example a console and a test's
// recorder, without changing the client's configuration. An Observer with
// no hook changes nothing.
//
// A call keeps the observers subscribed when it starts, for its start and
// end hooks, those of each attempt and the events of its attempts'
// admission (breaker, throttle, rate-limit and bulkhead rejections) and
// fallback. The events that the retry engine, the breakers and the caches
// report (retries, budget denials, transitions, evictions) go to the
// observers subscribed when they happen. So a subscriber may see such
// events of calls it saw not start, and after cancel returns, calls
// already started may still run its hooks.
//
// The hooks are chained in order: each OnCallStart and OnAttemptStart gets
// the context the previous observer's returned, and the end hooks and
// OnEvent get the context the last one returned, from which every
// observer's own values can be read. An observer that keeps state in the
// context should use a key of its own: a value stored under the same key
// by a later observer shadows it (two telemetry observers, for instance,
// would each find the later one's span).
//
// Hooks still never run while the client holds a lock. With nobody
// subscribed and no Config.Observer, a call pays one atomic load to find
// that nobody listens.
func (c *Client) Subscribe(o Observer) (cancel func()) {
	p := o.observer()
	if p == nil {
		return func() {}
	}
	c.subMu.Lock()
	c.subs = append(c.subs[:len(c.subs):len(c.subs)], p)
	c.obs.Store(fanOut(c.cfgObs, c.subs))
	c.subMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.subMu.Lock()
			defer c.subMu.Unlock()
			kept := make([]*Observer, 0, len(c.subs))
			for _, s := range c.subs {
				if s != p {
					kept = append(kept, s)
				}
			}
			c.subs = kept
			c.obs.Store(fanOut(c.cfgObs, kept))
		})
	}
}

// fanOut returns one Observer that runs first's hooks and then those of
// rest, in order, or nil when there is none; first may be nil. Each hook
// is set only when some observer has it.
func fanOut(first *Observer, rest []*Observer) *Observer {
	all := make([]*Observer, 0, 1+len(rest))
	if first != nil {
		all = append(all, first)
	}
	all = append(all, rest...)
	switch len(all) {
	case 0:
		return nil
	case 1:
		return all[0]
	}
	var f Observer
	has := func(hook func(*Observer) bool) bool { return slices.ContainsFunc(all, hook) }
	if has(func(o *Observer) bool { return o.OnCallStart != nil }) {
		f.OnCallStart = func(ctx context.Context, info CallInfo) context.Context {
			for _, o := range all {
				ctx = o.callStart(ctx, info)
			}
			return ctx
		}
	}
	if has(func(o *Observer) bool { return o.OnCallEnd != nil }) {
		f.OnCallEnd = func(ctx context.Context, info CallInfo, err error) {
			for _, o := range all {
				o.callEnd(ctx, info, err)
			}
		}
	}
	if has(func(o *Observer) bool { return o.OnAttemptStart != nil }) {
		f.OnAttemptStart = func(ctx context.Context, info AttemptInfo) context.Context {
			for _, o := range all {
				ctx = o.attemptStart(ctx, info)
			}
			return ctx
		}
	}
	if has(func(o *Observer) bool { return o.OnAttemptEnd != nil }) {
		f.OnAttemptEnd = func(ctx context.Context, info AttemptInfo, err error) {
			for _, o := range all {
				o.attemptEnd(ctx, info, err)
			}
		}
	}
	if has(func(o *Observer) bool { return o.OnEvent != nil }) {
		f.OnEvent = func(ctx context.Context, e Event) {
			for _, o := range all {
				o.event(ctx, e)
			}
		}
	}
	return &f
}
