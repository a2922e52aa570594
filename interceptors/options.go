package interceptors

import (
	"time"

	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/retry"
)

// ClientOption configures a [Client] in [NewClient]. Options are immutable
// values and may be reused.
type ClientOption interface {
	apply(*clientConfig)
}

type clientOptionFunc func(*clientConfig)

func (f clientOptionFunc) apply(c *clientConfig) { f(c) }

// clientConfig is what the ClientOptions set.
type clientConfig struct {
	methods   map[string]Policy
	services  map[string]Policy
	dupes     []string
	observer  Observer
	newBudget func(target string) retry.Budget
}

// WithMethodPolicy makes p the policy of the calls of fullMethod,
// "/package.Service/Method", instead of the service's or the default
// policy. Setting the same method twice is an error of NewClient.
func WithMethodPolicy(fullMethod string, p Policy) ClientOption {
	return clientOptionFunc(func(c *clientConfig) {
		if _, ok := c.methods[fullMethod]; ok {
			c.dupes = append(c.dupes, "WithMethodPolicy: "+fullMethod)
		}
		if c.methods == nil {
			c.methods = map[string]Policy{}
		}
		c.methods[fullMethod] = p
	})
}

// WithServicePolicy makes p the policy of the calls of every method of
// service, "package.Service", that has no policy of its own, instead of the
// default policy. Setting the same service twice is an error of NewClient.
func WithServicePolicy(service string, p Policy) ClientOption {
	return clientOptionFunc(func(c *clientConfig) {
		if _, ok := c.services[service]; ok {
			c.dupes = append(c.dupes, "WithServicePolicy: "+service)
		}
		if c.services == nil {
			c.services = map[string]Policy{}
		}
		c.services[service] = p
	})
}

// WithObserver makes o hear of every call, attempt and event. The default,
// and what a nil o selects, is no observer, which costs nothing.
func WithObserver(o Observer) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.observer = o })
}

// WithTargetBudget sets how the client creates the retry budget it shares
// between every call to one target whose RetryPolicy or HedgingPolicy has
// no Budget of its own: newBudget is called once per target (cc.Target()).
// A nil newBudget, or one that returns nil, means no per-target budget.
// The default is retry.NewRatioBudget(10*time.Second, 10, 0.2), Linkerd's:
// retries may add 20% to the calls of the last 10 seconds, plus 10 per
// second.
func WithTargetBudget(newBudget func(target string) retry.Budget) ClientOption {
	return clientOptionFunc(func(c *clientConfig) {
		if newBudget == nil {
			newBudget = func(string) retry.Budget { return nil }
		}
		c.newBudget = newBudget
	})
}

// defaultTargetBudget is the per-target budget without WithTargetBudget.
func defaultTargetBudget(string) retry.Budget {
	return retry.NewRatioBudget(10*time.Second, 10, 0.2)
}

// Per-call options. They embed grpc.EmptyCallOption, so they pass through
// the invoker harmlessly; the pipeline reads them from the call's options.

// MaxAttemptsCallOption overrides the most attempts of one call; create it
// with [WithMaxAttempts].
type MaxAttemptsCallOption struct {
	grpc.EmptyCallOption
	// N is the most attempts, the first included.
	N int
}

// WithMaxAttempts makes one call make at most n attempts in all, instead of
// what its RetryPolicy or HedgingPolicy says; n below 1 counts as 1. It
// does nothing for a method with neither retry nor hedging.
func WithMaxAttempts(n int) MaxAttemptsCallOption {
	return MaxAttemptsCallOption{N: max(n, 1)}
}

// DisableRetryCallOption disables retries and hedging for one call; create
// it with [DisableRetry].
type DisableRetryCallOption struct {
	grpc.EmptyCallOption
}

// DisableRetry makes one call make a single attempt, whatever its policy
// says about retries and hedging. Breaker, bulkhead, timeouts and fallback
// still apply.
func DisableRetry() DisableRetryCallOption { return DisableRetryCallOption{} }

// AttemptTimeoutCallOption overrides the per-attempt timeout of one call;
// create it with [WithAttemptTimeout].
type AttemptTimeoutCallOption struct {
	grpc.EmptyCallOption
	// D is the per-attempt timeout; zero or less means none.
	D time.Duration
}

// WithAttemptTimeout bounds each attempt of one call to d, instead of its
// RetryPolicy's AttemptTimeout; d of zero or less removes the per-attempt
// timeout. It applies to hedged attempts as well; streams ignore it (see
// "Streams" in the package documentation).
func WithAttemptTimeout(d time.Duration) AttemptTimeoutCallOption {
	return AttemptTimeoutCallOption{D: max(d, 0)}
}

// IdempotentCallOption overrides whether one call counts as idempotent;
// create it with [WithIdempotent].
type IdempotentCallOption struct {
	grpc.EmptyCallOption
	// Idempotent is whether the call may run more than once.
	Idempotent bool
}

// WithIdempotent declares one call idempotent, or not, whatever its
// method's descriptor and policy say. It decides which codes are retried
// and whether the call may be hedged.
func WithIdempotent(idempotent bool) IdempotentCallOption {
	return IdempotentCallOption{Idempotent: idempotent}
}

// overrides are the per-call options of one call.
type overrides struct {
	maxAttempts    int // 0: the policy's
	disable        bool
	attemptTimeout time.Duration
	hasTimeout     bool
	idempotent     Idempotency // IdempotencyFromDescriptor: the method's
}

// readOverrides collects the per-call options among opts; later ones win.
func readOverrides(opts []grpc.CallOption) overrides {
	var o overrides
	for _, opt := range opts {
		switch v := opt.(type) {
		case MaxAttemptsCallOption:
			o.maxAttempts = max(v.N, 1)
		case DisableRetryCallOption:
			o.disable = true
		case AttemptTimeoutCallOption:
			o.attemptTimeout, o.hasTimeout = max(v.D, 0), true
		case IdempotentCallOption:
			o.idempotent = NotIdempotent
			if v.Idempotent {
				o.idempotent = Idempotent
			}
		}
	}
	return o
}
