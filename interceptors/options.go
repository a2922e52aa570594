package interceptors

import (
	"time"

	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/retry"
)

// DefaultMaxKeys is the number of (target, method) pairs a [Client] keeps
// state for when Config.MaxKeys is zero.
const DefaultMaxKeys = 10000

// Config configures a [Client]. It is plain data: [NewClient] copies it
// (the maps too), so changing a Config afterwards affects no client.
//
// Every field is optional. The zero Config is a client that applies no
// pattern: every call goes to the invoker once, unchanged.
type Config struct {
	// Default is the policy of every call whose method and service have
	// no policy of their own.
	Default Policy
	// Methods maps full method names, "/package.Service/Method", to their
	// policy, which replaces the service's and the default policy as a
	// whole.
	Methods map[string]Policy
	// Services maps service names, "package.Service", to the policy of
	// every method of the service that has none of its own; it replaces
	// the default policy as a whole.
	Services map[string]Policy
	// Observer hears of every call, attempt and event. The zero Observer,
	// the default, costs nothing.
	Observer Observer
	// TargetBudget creates the retry budget that the client shares between
	// every call to one target (cc.Target()) whose RetryPolicy or
	// HedgingPolicy has no Budget of its own; it is called once per target.
	// Returning [NoBudget] (or nil) means no per-target budget. Nil, the
	// default, is [DefaultTargetBudget]. See "Retry budgets" in the
	// package documentation for the error a call gets when it denies a
	// retry.
	TargetBudget func(target string) retry.Budget
	// MaxKeys bounds the state the client keeps per (target, method):
	// resolved policies, breakers, bulkheads and per-target budgets, each
	// at most MaxKeys. Zero means [DefaultMaxKeys]; negative values are
	// invalid. See "Bounded state" in the package documentation for what
	// happens beyond it.
	MaxKeys int
	// OnBreakerCreated, when not nil, is called with each breaker the
	// client creates for a policy's BreakerPolicy, so that something can
	// join it, such as a fleet that shares breaker state between processes
	// (redisfleet.Breakers.Join). name is the same in every process with
	// the same Config and targets: the policy's name ("default",
	// "method:/pkg.Service/Method" or "service:pkg.Service"), a space,
	// and the breaker's scope key (the target and method, the target and
	// service, or the target, as Event.Key spells them). The release it
	// returns, when not nil, is called once when the client drops the
	// breaker from its bounded state. The overflow breakers that calls
	// share when that state is full are not offered. It runs on the
	// goroutine of the call that created the breaker, just after the
	// client cached it and holding no lock, so a concurrent call may use
	// the breaker a moment before it returns; it must be safe for
	// concurrent use and quick.
	OnBreakerCreated func(name string, b *breaker.Breaker) (release func())
}

// DefaultTargetBudget returns a new budget of the kind each target gets
// when Config.TargetBudget is nil: a [retry.RatioBudget] under which the
// retries of the last 10 seconds may reach 20% of the calls of those 10
// seconds, or 10 retries when 20% of the calls is fewer, so that a target
// with little traffic can still retry:
//
//	retry.NewRatioBudgetFromConfig(retry.RatioBudgetConfig{
//		TTL: 10 * time.Second, MinRetriesPerSecond: 1, Ratio: 0.2,
//		FloorInsideRatio: true,
//	})
//
// Under a total outage a target with at least 5 calls per second makes at
// most 1.2 attempts per call. The floor counts inside the ratio rather than
// on top of it as in Linkerd's budget (retry.NewRatioBudget(10*time.Second,
// 10, 0.2)), which lets a busy target exceed 1.2 attempts per call by its
// floor. The target is not used.
func DefaultTargetBudget(string) retry.Budget {
	return retry.NewRatioBudgetFromConfig(retry.RatioBudgetConfig{
		TTL:                 10 * time.Second,
		MinRetriesPerSecond: 1,
		Ratio:               0.2,
		FloorInsideRatio:    true,
	})
}

// CallOption is a per-call setting of the pipeline, passed among a call's
// grpc.CallOptions: [WithMaxAttempts], [DisableRetry], [WithAttemptTimeout]
// and [WithIdempotency] make one. It embeds grpc.EmptyCallOption, so it
// passes through the invoker harmlessly; the pipeline reads it from the
// call's options, and when a call has several of one kind the last wins.
// The zero CallOption sets nothing.
type CallOption struct {
	grpc.EmptyCallOption
	kind  callOptionKind
	n     int
	d     time.Duration
	idemp Idempotency
}

type callOptionKind uint8

const (
	callMaxAttempts callOptionKind = iota + 1
	callDisableRetry
	callAttemptTimeout
	callIdempotency
)

// WithMaxAttempts makes one call make at most n attempts in all, instead of
// what its RetryPolicy or HedgingPolicy says; n below 1 counts as 1. It
// does nothing for a method with neither retry nor hedging.
func WithMaxAttempts(n int) CallOption {
	return CallOption{kind: callMaxAttempts, n: max(n, 1)}
}

// DisableRetry makes one call make a single attempt, whatever its policy
// says about retries and hedging. Breaker, bulkhead, timeouts and fallback
// still apply.
func DisableRetry() CallOption { return CallOption{kind: callDisableRetry} }

// WithAttemptTimeout bounds each attempt of one call to d, instead of its
// RetryPolicy's AttemptTimeout; d of zero or less removes the per-attempt
// timeout. It applies to hedged attempts as well; streams ignore it (see
// "Streams" in the package documentation).
func WithAttemptTimeout(d time.Duration) CallOption {
	return CallOption{kind: callAttemptTimeout, d: max(d, 0)}
}

// WithIdempotency declares whether one call may run more than once,
// whatever its method's descriptor and policy say: [AlwaysIdempotent] or
// [NeverIdempotent]; [FromDescriptor] restores the method's own setting. It
// decides which codes are retried and whether the call may be hedged.
func WithIdempotency(i Idempotency) CallOption {
	return CallOption{kind: callIdempotency, idemp: i}
}

// overrides are the per-call options of one call.
type overrides struct {
	maxAttempts    int // 0: the policy's
	disable        bool
	attemptTimeout time.Duration
	hasTimeout     bool
	idempotent     Idempotency // FromDescriptor: the method's
}

// readOverrides collects the per-call options among opts; later ones win.
func readOverrides(opts []grpc.CallOption) overrides {
	var o overrides
	for _, opt := range opts {
		v, ok := opt.(CallOption)
		if !ok {
			continue
		}
		switch v.kind {
		case callMaxAttempts:
			o.maxAttempts = max(v.n, 1)
		case callDisableRetry:
			o.disable = true
		case callAttemptTimeout:
			o.attemptTimeout, o.hasTimeout = max(v.d, 0), true
		case callIdempotency:
			if v.idemp <= NeverIdempotent {
				o.idempotent = v.idemp
			}
		}
	}
	return o
}
