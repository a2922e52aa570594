package interceptors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	"github.com/engineeringlabs/grpc-resilience/retry"
)

// maxBulkheads bounds the bulkheads of one policy; keys beyond it share an
// overflow bulkhead (see bulkhead.Partitioned).
const maxBulkheads = 1024

// Sentinel causes of the pipeline's own timeouts, so that a deadline the
// pipeline set is told apart from the caller's.
var (
	errDefaultTimeout = errors.New("interceptors: default timeout")
	errAttemptTimeout = errors.New("interceptors: attempt timeout")
)

// Client is the client-side resilience pipeline: it applies a [Policy] per
// method, service or by default, and owns the state the patterns share
// between calls: circuit breakers, bulkheads, retry budgets per target and
// hedging latency histograms. Its interceptors,
// [Client.UnaryClientInterceptor] and [Client.StreamClientInterceptor], go
// into grpc.WithChainUnaryInterceptor and grpc.WithChainStreamInterceptor.
//
// Per call, the patterns run in this order, outermost first:
//
//	default timeout, fallback, hedging or retry, circuit breaker,
//	client-side bulkhead, per-attempt timeout, the call.
//
// The state of each method and target is built on its first call and
// cached, so later calls only look it up: a call whose first attempt
// succeeds allocates nothing beyond what its timeouts need (a context per
// timeout set). The cache keeps one entry per target and method called.
//
// A Client is safe for concurrent use; one Client may serve any number of
// connections. Create it with [NewClient]; the zero Client is not usable.
type Client struct {
	observer  Observer
	newBudget func(target string) retry.Budget
	def       *compiled
	methods   map[string]*compiled
	services  map[string]*compiled

	states atomic.Pointer[map[stateKey]*methodState] // copied on write, under mu

	mu      sync.Mutex
	budgets map[string]retry.Budget // per target
}

// stateKey identifies the calls of one method to one target.
type stateKey struct{ target, method string }

// compiled is a validated Policy with the state shared by every call it
// governs.
type compiled struct {
	p            Policy
	retryTable   classify.Table
	breakerTable classify.Table
	breakers     *breaker.Registry     // nil without Breaker
	bulkheads    *bulkhead.Partitioned // nil without Bulkhead
	nonFatal     [maxCode + 1]bool     // hedging
	fallbackOn   [maxCode + 1]bool
}

// NewClient returns a pipeline that applies def to every call whose method
// and service have no policy of their own (WithMethodPolicy,
// WithServicePolicy). It validates every policy and method name and returns
// all the problems at once, each naming where it was found, the field and
// its value.
func NewClient(def Policy, opts ...ClientOption) (*Client, error) {
	var cfg clientConfig
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	var errs []error
	for _, d := range cfg.dupes {
		errs = append(errs, fmt.Errorf("%s: set twice", d))
	}
	check := func(where string, p Policy) {
		if err := p.Validate(); err != nil {
			for _, e := range unjoin(err) {
				errs = append(errs, fmt.Errorf("%s: %w", where, e))
			}
		}
	}
	check("default policy", def)
	for m, p := range cfg.methods {
		if _, _, ok := classify.SplitMethod(m); !ok {
			errs = append(errs, fmt.Errorf("WithMethodPolicy: method %q: not of the form \"/package.Service/Method\"", m))
		}
		check("method "+m, p)
	}
	for s, p := range cfg.services {
		if s == "" || containsSlash(s) {
			errs = append(errs, fmt.Errorf("WithServicePolicy: service %q: not of the form \"package.Service\"", s))
		}
		check("service "+s, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("interceptors: invalid configuration: %w", err)
	}
	return build(def, cfg), nil
}

// build makes the Client of a validated configuration.
func build(def Policy, cfg clientConfig) *Client {
	c := &Client{
		observer:  cfg.observer,
		newBudget: cfg.newBudget,
		methods:   make(map[string]*compiled, len(cfg.methods)),
		services:  make(map[string]*compiled, len(cfg.services)),
		budgets:   map[string]retry.Budget{},
	}
	if c.newBudget == nil {
		c.newBudget = defaultTargetBudget
	}
	c.def = c.compile(def)
	for m, p := range cfg.methods {
		c.methods[m] = c.compile(p)
	}
	for s, p := range cfg.services {
		c.services[s] = c.compile(p)
	}
	return c
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}

// compile builds the shared state of a validated policy.
func (c *Client) compile(p Policy) *compiled {
	cp := &compiled{p: p, retryTable: classify.Default(), breakerTable: classify.Default()}
	if p.Retry != nil && p.Retry.Table != nil {
		cp.retryTable = *p.Retry.Table
	}
	if b := p.Breaker; b != nil {
		if b.Table != nil {
			cp.breakerTable = *b.Table
		}
		cfg := b.Config
		if obs := c.observer; obs != nil {
			user := cfg.OnStateChange
			cfg.OnStateChange = func(sc breaker.StateChange) {
				if user != nil {
					user(sc)
				}
				obs.Event(context.Background(), Event{Kind: EventBreakerStateChange, StateChange: sc})
			}
		}
		cp.breakers = breaker.NewRegistry(cfg, 0)
	}
	if b := p.Bulkhead; b != nil {
		limit, queue, wait := b.Limit, b.Queue, b.MaxWait
		cp.bulkheads = bulkhead.NewPartitioned(maxBulkheads, func(string) *bulkhead.Bulkhead {
			return bulkhead.New(limit, bulkhead.WithQueue(queue), bulkhead.WithMaxWait(wait))
		})
	}
	if h := p.Hedging; h != nil {
		for _, code := range h.NonFatalCodes {
			cp.nonFatal[code] = true
		}
	}
	if f := p.Fallback; f != nil {
		on := f.Codes
		if on == nil && f.If == nil {
			on = defaultFallbackCodes
		}
		for _, code := range on {
			cp.fallbackOn[code] = true
		}
	}
	return cp
}

// policyFor returns the compiled policy of method: its own, its service's or
// the default.
func (c *Client) policyFor(method string) *compiled {
	if cp, ok := c.methods[method]; ok {
		return cp
	}
	if service, _, ok := classify.SplitMethod(method); ok {
		if cp, ok := c.services[service]; ok {
			return cp
		}
	}
	return c.def
}

// UnaryClientInterceptor returns the pipeline as a unary client
// interceptor, for grpc.WithChainUnaryInterceptor. Every error it returns is
// a gRPC status (see [StatusError]). Per-call options ([WithMaxAttempts],
// [DisableRetry], [WithAttemptTimeout], [WithIdempotent]) are read from the
// call's options and passed on to the invoker, where they do nothing.
func (c *Client) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return c.intercept
}

func (c *Client) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var target string
	if cc != nil {
		target = cc.Target()
	}
	r := rpc{method: method, req: req, reply: reply, cc: cc, invoker: invoker, opts: opts}
	return c.state(target, method).call(ctx, &r)
}

// Breaker returns the circuit breaker that guards the calls of fullMethod
// to target (cc.Target()), creating it if no call made it yet, for
// instance to watch its state or force it open. It returns nil when the
// method's policy has no breaker, or when the policy's registry is full
// (breaker.DefaultMaxBreakers breakers; calls then run without one).
func (c *Client) Breaker(target, fullMethod string) *breaker.Breaker {
	return c.state(target, fullMethod).breaker
}

// state returns the cached state of method on target, building it on
// first use. Looking up an existing state takes no lock and allocates
// nothing.
func (c *Client) state(target, method string) *methodState {
	if m := c.states.Load(); m != nil {
		if ms, ok := (*m)[stateKey{target, method}]; ok {
			return ms
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key := stateKey{target, method}
	old := c.states.Load()
	if old != nil {
		if ms, ok := (*old)[key]; ok {
			return ms
		}
	}
	ms := c.newState(target, method)
	next := make(map[stateKey]*methodState, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	next[key] = ms
	c.states.Store(&next)
	return ms
}

func lenOf(m *map[stateKey]*methodState) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// budgetFor returns the per-target budget of target; c.mu is held.
func (c *Client) budgetFor(target string) retry.Budget {
	b, ok := c.budgets[target]
	if !ok {
		b = c.newBudget(target)
		c.budgets[target] = b
	}
	return b
}

// resolveBudget returns the budget a policy's field selects; c.mu is held.
func (c *Client) resolveBudget(own retry.Budget, target string) retry.Budget {
	switch own {
	case nil:
		return c.budgetFor(target)
	case NoBudget:
		return nil
	default:
		return own
	}
}

// scopeKey returns the key of the breaker or bulkhead that calls of method
// to target share under scope.
func scopeKey(scope Scope, target, method string) string {
	switch scope {
	case ScopeTarget:
		return target
	case ScopeService:
		if service, _, ok := classify.SplitMethod(method); ok {
			return target + "/" + service
		}
	}
	return target + method
}

// methodState is everything the pipeline needs for the calls of one method
// to one target, built once. It is read-only after newState, so calls use it
// concurrently without locks.
type methodState struct {
	c              *compiled
	observer       Observer
	method, target string
	idempotent     bool
	pattern        Pattern
	maxAttempts    int
	attemptTimeout time.Duration
	retry          *retry.Policy      // PatternRetry
	budget         retry.Budget       // PatternHedging
	hist           *latencyHistogram  // PatternHedging with a percentile
	breaker        *breaker.Breaker   // nil: no breaker
	bulkhead       *bulkhead.Bulkhead // nil: no bulkhead
	// respType is the method's response type from protoregistry, nil
	// when unknown; streams drain ended attempts into it.
	respType protoreflect.MessageType
}

// newState builds the state of method on target; c.mu is held.
func (c *Client) newState(target, method string) *methodState {
	cp := c.policyFor(method)
	p := &cp.p
	ms := &methodState{c: cp, observer: c.observer, method: method, target: target, maxAttempts: 1, respType: responseType(method)}
	switch p.Idempotent {
	case Idempotent:
		ms.idempotent = true
	case NotIdempotent:
		ms.idempotent = false
	default:
		ms.idempotent = classify.Idempotent(method)
	}
	if cp.breakers != nil {
		// A full registry leaves the method without a breaker, as
		// Breaker documents.
		ms.breaker, _ = cp.breakers.Get(scopeKey(p.Breaker.Scope, target, method))
	}
	if cp.bulkheads != nil {
		ms.bulkhead = cp.bulkheads.Get(scopeKey(p.Bulkhead.Scope, target, method))
	}
	switch {
	case p.Retry != nil:
		r := p.Retry
		ms.pattern = PatternRetry
		ms.maxAttempts = r.MaxAttempts
		if ms.maxAttempts == 0 {
			ms.maxAttempts = defaultMaxAttempts
		}
		ms.attemptTimeout = r.AttemptTimeout
		jitter := r.Jitter
		if jitter == nil {
			jitter = retry.FullJitter
		}
		opts := []retry.Option{
			retry.WithBackoff(r.Backoff),
			retry.WithJitter(jitter),
			retry.WithBudget(c.resolveBudget(r.Budget, target)),
		}
		if c.observer != nil {
			opts = append(opts, retry.WithListener(ms.retryListener()))
		}
		ms.retry = retry.New(ms.maxAttempts, opts...)
	case p.Hedging != nil:
		h := p.Hedging
		ms.pattern = PatternHedging
		ms.maxAttempts = 1 + h.MaxExtraAttempts
		if h.MaxExtraAttempts == 0 {
			ms.maxAttempts = 2
		}
		ms.budget = c.resolveBudget(h.Budget, target)
		if h.Percentile > 0 {
			ms.hist = new(latencyHistogram)
		}
	}
	return ms
}

// retryListener forwards the retry engine's events to the observer.
func (ms *methodState) retryListener() retry.Listener {
	obs := ms.observer
	ev := func(ctx context.Context, kind EventKind, attempt int, err error, delay time.Duration) {
		obs.Event(ctx, Event{Kind: kind, Method: ms.method, Target: ms.target, Attempt: attempt, Err: err, Delay: delay})
	}
	return retry.Listener{
		OnRetry: func(ctx context.Context, attempt int, err error, delay time.Duration) {
			ev(ctx, EventRetry, attempt, err, delay)
		},
		OnExhausted: func(ctx context.Context, attempts int, err error) {
			ev(ctx, EventRetriesExhausted, attempts, err, 0)
		},
		OnBudgetDenied: func(ctx context.Context, attempt int, err error) {
			ev(ctx, EventBudgetDenied, attempt, err, 0)
		},
		OnDeadline: func(ctx context.Context, attempt int, err error, delay time.Duration) {
			ev(ctx, EventDeadline, attempt, err, delay)
		},
	}
}

// rpc is one intercepted call, as grpc hands it to an interceptor.
type rpc struct {
	method     string
	req, reply any
	cc         *grpc.ClientConn
	invoker    grpc.UnaryInvoker
	opts       []grpc.CallOption
}

// call runs one logical call through the pipeline: default timeout,
// fallback, then retry, hedging or a single attempt.
func (ms *methodState) call(ctx context.Context, r *rpc) error {
	p := &ms.c.p
	ov := readOverrides(r.opts)
	pattern, idempotent, maxAttempts := ms.pattern, ms.idempotent, ms.maxAttempts
	if ov.idempotent != IdempotencyFromDescriptor {
		idempotent = ov.idempotent == Idempotent
	}
	if ov.maxAttempts > 0 && pattern != PatternSingle {
		maxAttempts = ov.maxAttempts
	}
	if ov.disable || maxAttempts == 1 || pattern == PatternHedging && (!idempotent || !canClone(r.reply)) {
		pattern, maxAttempts = PatternSingle, 1
	}
	timeout := ms.attemptTimeout
	if ov.hasTimeout {
		timeout = ov.attemptTimeout
	}

	obs := ms.observer
	var info CallInfo
	if obs != nil {
		info = CallInfo{Method: ms.method, Target: ms.target, Pattern: pattern, MaxAttempts: maxAttempts, Idempotent: idempotent}
		ctx = obs.CallStart(ctx, info)
	}
	callCtx := ctx

	// Default timeout, the outermost pattern.
	var cancel context.CancelFunc
	if p.DefaultTimeout > 0 {
		if _, ok := ctx.Deadline(); !ok {
			ctx, cancel = context.WithTimeoutCause(ctx, p.DefaultTimeout, errDefaultTimeout)
		}
	}

	var err error
	attempts := 0
	switch pattern {
	case PatternRetry:
		err = ms.retryCall(ctx, r, maxAttempts, timeout, idempotent, &attempts)
	case PatternHedging:
		err = ms.hedgeCall(ctx, r, maxAttempts, timeout, &attempts)
	default:
		res := ms.attempt(ctx, r, r.reply, AttemptInfo{Attempt: 1}, timeout, idempotent, false)
		if res.invoked {
			attempts = 1
		}
		err = res.err
	}
	// The caller had no deadline, so a DEADLINE_EXCEEDED once ours has
	// passed is ours, also when the server's report of it came before our
	// timer fired.
	if err != nil && cancel != nil && status.Code(err) == codes.DeadlineExceeded && ownTimeout(callCtx, ctx, errDefaultTimeout) {
		if _, wrapped := err.(*StatusError); !wrapped {
			err = &StatusError{st: statusOf(err), cause: &resilience.TimeoutError{After: p.DefaultTimeout}}
		}
	}

	// Fallback, inside the default timeout: it sees the final error.
	if err != nil && p.Fallback != nil && ms.c.fallbackMatches(err) {
		if obs != nil {
			obs.Event(ctx, Event{Kind: EventFallback, Method: ms.method, Target: ms.target, Err: err})
		}
		if ferr := p.Fallback.Func(ctx, ms.method, r.req, r.reply, err); ferr != nil {
			err = finalError(ferr)
		} else {
			err = nil
			info.Fallback = true
		}
	}
	if cancel != nil {
		cancel()
	}
	if obs != nil {
		info.Attempts = attempts
		obs.CallEnd(callCtx, info, err)
	}
	return err
}

// fallbackMatches reports whether err triggers the policy's fallback.
func (cp *compiled) fallbackMatches(err error) bool {
	if c := status.Code(err); c <= maxCode && cp.fallbackOn[c] {
		return true
	}
	return cp.p.Fallback.If != nil && cp.p.Fallback.If(err)
}

// retryCall runs the attempts of a retried call with the retry engine,
// step by step.
func (ms *methodState) retryCall(ctx context.Context, r *rpc, maxAttempts int, timeout time.Duration, idempotent bool, attempts *int) error {
	pol := ms.retry
	if maxAttempts != pol.MaxAttempts() {
		pol = pol.With(retry.WithMaxAttempts(maxAttempts))
	}
	rc := pol.Start()
	honoured := false
	for {
		a := rc.Attempt()
		res := ms.attempt(ctx, r, r.reply, AttemptInfo{Attempt: a.Num, Delay: a.Delay, PushbackHonoured: honoured}, timeout, idempotent, true)
		if res.invoked {
			*attempts++
		}
		err := res.err
		// The table decides; the engine only sees what it may retry. A
		// server's veto stays as it is, so that the engine counts it as
		// the retryable failure gRPC's throttling counts it as.
		if err != nil && !res.retryable && !(res.pushback.Present && !res.pushback.Retry) {
			err = retry.Permanent(err)
		}
		d := rc.Next(ctx, err)
		if !d.Retry {
			// Once ctx is done the engine returns the error as it got it,
			// marker included.
			if pe, ok := d.Err.(*retry.PermanentError); ok {
				return finalError(pe.Err)
			}
			return finalError(d.Err)
		}
		honoured = res.pushback.Present
		if werr := rc.Wait(ctx, d.Delay); werr != nil {
			return finalError(werr)
		}
	}
}
