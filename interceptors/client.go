package interceptors

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	"github.com/engineeringlabs/grpc-resilience/internal/keycache"
	"github.com/engineeringlabs/grpc-resilience/ratelimit"
	"github.com/engineeringlabs/grpc-resilience/retry"
	"github.com/engineeringlabs/grpc-resilience/throttle"
)

// Sentinel causes of the pipeline's own timeouts, so that a deadline the
// pipeline set is told apart from the caller's.
var (
	errDefaultTimeout = errors.New("interceptors: default timeout")
	errAttemptTimeout = errors.New("interceptors: attempt timeout")
)

// Client is the client-side resilience pipeline: it applies a [Policy] per
// method, service or by default, and owns the state the patterns share
// between calls: circuit breakers, rate limiters, bulkheads, retry budgets
// per target and hedging latency histograms. Its interceptors,
// [Client.UnaryClientInterceptor] and [Client.StreamClientInterceptor], go
// into grpc.WithChainUnaryInterceptor and grpc.WithChainStreamInterceptor.
//
// The patterns run in the order "Order of the patterns" in the package
// documentation gives. The state of each method and target is built on its
// first call and cached, so later calls only look it up: a call whose
// first attempt succeeds allocates nothing beyond what its timeouts need
// (a context per timeout set). The cache is bounded (see "Bounded state").
//
// A Client is safe for concurrent use; one Client may serve any number of
// connections. Create it with [NewClient]; the zero Client is not usable.
type Client struct {
	// obs is what calls hear: Config.Observer followed by the
	// subscribers, or nil when nobody listens; see Subscribe.
	obs       atomic.Pointer[Observer]
	cfgObs    *Observer // Config.Observer; nil: no hook set
	subMu     sync.Mutex
	subs      []*Observer // in subscription order; guarded by subMu
	newBudget func(target string) retry.Budget
	maxKeys   int
	onBreaker func(name string, b *breaker.Breaker) (release func()) // Config.OnBreakerCreated
	def       *compiled
	methods   map[string]*compiled
	services  map[string]*compiled

	states  *keycache.Cache[stateKey, *methodState]
	budgets *keycache.Cache[string, retry.Budget] // per target
}

// stateKey identifies the calls of one method to one target.
type stateKey struct{ target, method string }

// hashStateKey hashes a stateKey for the state cache.
func hashStateKey(seed maphash.Seed) func(stateKey) uint64 {
	return func(k stateKey) uint64 {
		var h maphash.Hash
		h.SetSeed(seed)
		h.WriteString(k.target)
		h.WriteByte(0)
		h.WriteString(k.method)
		return h.Sum64()
	}
}

// compiled is a validated Policy with the state shared by every call it
// governs.
type compiled struct {
	name          string // "default", "method:/pkg.Svc/M" or "service:pkg.Svc"
	p             Policy
	retryTable    classify.Table
	backoff       retry.Backoff // the retry policy's, built once; nil without one
	breakerTable  classify.Table
	breakerCfg    breaker.Config
	breakers      *breaker.Registry // shared scopes: per service or target; nil otherwise
	overBreaker   *breaker.Breaker  // ScopeMethod: shared by the calls whose state overflowed
	bulkheadCfg   bulkhead.Config
	bulkheads     *bulkhead.Partitioned // shared scopes; nil otherwise
	overBulkhead  *bulkhead.Bulkhead    // ScopeMethod: shared by the calls whose state overflowed
	limiters      *ratelimit.Keyed      // nil without RateLimit
	throttleTable classify.Table
	throttleCfg   throttle.Config
	throttles     *throttle.Registry // shared scopes; nil otherwise
	overThrottle  *throttle.Throttle // ScopeMethod: shared by the calls whose state overflowed
	nonFatal      [maxCode + 1]bool  // hedging
	fallbackOn    [maxCode + 1]bool
}

// NewClient returns the pipeline cfg describes. It validates every policy
// and method name and returns all the problems at once, each a
// *resilience.FieldError whose Field says where it was found, such as
// "Methods[/pkg.Svc/Get].Retry.MaxAttempts" (see [resilience.FieldErrors]).
//
// A HedgingPolicy, or a RetryPolicy with an AttemptTimeout, repeats a call
// that may already have reached the server, so it needs an idempotent
// method. For a policy of Methods or Services whose Idempotency is
// FromDescriptor, NewClient checks the methods' descriptors and fails when
// the method (or, for a service, every method) is not declared idempotent
// or is not registered; set Idempotency: AlwaysIdempotent to repeat it
// anyway. The default policy applies to methods not known in advance: its
// hedging applies to idempotent methods only, and a timed-out attempt of
// another method is not retried.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("interceptors: invalid configuration: %w", err)
	}
	return build(cfg), nil
}

// Validate reports every problem of c, as [NewClient] describes, each a
// *resilience.FieldError, joined with errors.Join; nil when c is valid.
func (c Config) Validate() error {
	var errs []error
	check := func(where string, p Policy) {
		for _, fe := range resilience.FieldErrors(p.Validate()) {
			errs = append(errs, fe.Prefix(where))
		}
	}
	check("Default", c.Default)
	for _, m := range slices.Sorted(maps.Keys(c.Methods)) {
		p := c.Methods[m]
		where := "Methods[" + m + "]"
		if _, _, ok := classify.SplitMethod(m); !ok {
			errs = append(errs, &resilience.FieldError{Field: "Methods", Value: m, Reason: `not of the form "/package.Service/Method"`})
		} else if p.Idempotency == FromDescriptor && !classify.IdempotentByDescriptor(m) {
			errs = append(errs, repeatsWithoutIdempotency(where, p, "the method's descriptor does not declare")...)
		}
		check(where, p)
	}
	for _, s := range slices.Sorted(maps.Keys(c.Services)) {
		p := c.Services[s]
		where := "Services[" + s + "]"
		if s == "" || strings.Contains(s, "/") {
			errs = append(errs, &resilience.FieldError{Field: "Services", Value: s, Reason: `not of the form "package.Service"`})
		} else if p.Idempotency == FromDescriptor && !anyIdempotent(s) {
			errs = append(errs, repeatsWithoutIdempotency(where, p, "no method of the service's descriptor declares")...)
		}
		check(where, p)
	}
	if c.MaxKeys < 0 {
		errs = append(errs, &resilience.FieldError{Field: "MaxKeys", Value: c.MaxKeys, Reason: "must not be negative"})
	}
	return errors.Join(errs...)
}

// repeatsWithoutIdempotency returns the errors of a policy that would
// repeat calls of methods that are not declared idempotent.
func repeatsWithoutIdempotency(where string, p Policy, whose string) []error {
	const optIn = " idempotency_level IDEMPOTENT or NO_SIDE_EFFECTS (an unregistered descriptor declares nothing); set Idempotency: AlwaysIdempotent to repeat the calls anyway"
	var errs []error
	if p.Hedging != nil {
		errs = append(errs, &resilience.FieldError{Field: where + ".Hedging", Value: "set", Reason: "hedging would make one attempt: " + whose + optIn})
	}
	if p.Retry != nil && p.Retry.AttemptTimeout > 0 {
		errs = append(errs, &resilience.FieldError{Field: where + ".Retry.AttemptTimeout", Value: p.Retry.AttemptTimeout, Reason: "a timed-out attempt would not be retried: " + whose + optIn})
	}
	return errs
}

// anyIdempotent reports whether some method of service is idempotent by
// its descriptor.
func anyIdempotent(service string) bool {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return false
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return false
	}
	for i := range sd.Methods().Len() {
		if classify.IdempotentByDescriptor("/" + service + "/" + string(sd.Methods().Get(i).Name())) {
			return true
		}
	}
	return false
}

// build makes the Client of a validated configuration.
func build(cfg Config) *Client {
	c := &Client{
		cfgObs:    cfg.Observer.observer(),
		newBudget: cfg.TargetBudget,
		maxKeys:   cfg.MaxKeys,
		onBreaker: cfg.OnBreakerCreated,
		methods:   make(map[string]*compiled, len(cfg.Methods)),
		services:  make(map[string]*compiled, len(cfg.Services)),
	}
	c.obs.Store(c.cfgObs)
	if c.maxKeys == 0 {
		c.maxKeys = DefaultMaxKeys
	}
	if c.newBudget == nil {
		c.newBudget = DefaultTargetBudget
	}
	c.states = keycache.New(keycache.Config[stateKey, *methodState]{
		Max:       c.maxKeys,
		Hash:      hashStateKey(maphash.MakeSeed()),
		Evictable: (*methodState).idle,
		OnEvict: func(k stateKey, ms *methodState) {
			c.cacheEvent(EventEvicted, "state", k.target, k.method, scopeKey(ScopeMethod, k.target, k.method))
			if release := ms.release.Load(); release != nil {
				(*release)()
			}
		},
	})
	seed := maphash.MakeSeed()
	c.budgets = keycache.New(keycache.Config[string, retry.Budget]{
		Max:     c.maxKeys,
		Hash:    func(s string) uint64 { return maphash.String(seed, s) },
		OnEvict: func(target string, _ retry.Budget) { c.cacheEvent(EventEvicted, "budget", target, "", target) },
	})
	c.def = c.compile("default", cfg.Default)
	for m, p := range cfg.Methods {
		c.methods[m] = c.compile("method:"+m, p)
	}
	for s, p := range cfg.Services {
		c.services[s] = c.compile("service:"+s, p)
	}
	return c
}

// cacheEvent reports an eviction from, or an overflow of, one of the
// client's bounded caches.
func (c *Client) cacheEvent(kind EventKind, cache, target, method, key string) {
	if obs := c.obs.Load(); obs != nil {
		obs.event(context.Background(), Event{Kind: kind, Cache: cache, Target: target, Method: method, Key: key})
	}
}

// compile builds the shared state of a validated policy, called name in
// snapshots.
func (c *Client) compile(name string, p Policy) *compiled {
	cp := &compiled{name: name, p: p, retryTable: classify.Default(), breakerTable: classify.Default()}
	if p.Retry != nil {
		if p.Retry.Table != nil {
			cp.retryTable = *p.Retry.Table
		}
		cp.backoff = p.Retry.Backoff.backoff()
	}
	if b := p.Breaker; b != nil {
		if b.Table != nil {
			cp.breakerTable = *b.Table
		}
		cp.breakerCfg = b.config()
		cp.breakerCfg.OnStateChange = func(sc breaker.StateChange) {
			if obs := c.obs.Load(); obs != nil {
				obs.event(context.Background(), Event{Kind: EventBreakerStateChange, StateChange: sc})
			}
		}
		if b.Scope == ScopeMethod {
			oc := cp.breakerCfg
			oc.Name = overflowName
			cp.overBreaker = breaker.New(oc)
		} else {
			rc := breaker.RegistryConfig{
				Breaker:    cp.breakerCfg,
				MaxKeys:    c.maxKeys,
				OnEvict:    func(key string) { c.cacheEvent(EventEvicted, "breaker", "", "", key) },
				OnOverflow: func(key string) { c.cacheEvent(EventOverflow, "breaker", "", "", key) },
			}
			if on := c.onBreaker; on != nil {
				rc.OnCreate = func(key string, b *breaker.Breaker) func() { return on(name+" "+key, b) }
			}
			cp.breakers = breaker.NewRegistry(rc)
		}
	}
	if b := p.Bulkhead; b != nil {
		cp.bulkheadCfg = bulkhead.Config{Limit: b.Limit, Queue: b.Queue, MaxWait: b.MaxWait}
		if b.Scope == ScopeMethod {
			cp.overBulkhead = bulkhead.NewFromConfig(cp.bulkheadCfg)
		} else {
			bc := cp.bulkheadCfg
			cp.bulkheads = bulkhead.NewPartitioned(bulkhead.PartitionedConfig{
				MaxKeys:    c.maxKeys,
				New:        func(string) *bulkhead.Bulkhead { return bulkhead.NewFromConfig(bc) },
				OnEvict:    func(key string) { c.cacheEvent(EventEvicted, "bulkhead", "", "", key) },
				OnOverflow: func(key string) { c.cacheEvent(EventOverflow, "bulkhead", "", "", key) },
			})
		}
	}
	if t := p.Throttle; t != nil {
		cp.throttleTable = cp.breakerTable // the policy's breaker's, or the default
		if t.Table != nil {
			cp.throttleTable = *t.Table
		}
		cp.throttleCfg = t.config()
		if t.Scope == ScopeMethod {
			cp.overThrottle = throttle.New(cp.throttleCfg)
		} else {
			cp.throttles = throttle.NewRegistry(throttle.RegistryConfig{
				Throttle:   cp.throttleCfg,
				MaxKeys:    c.maxKeys,
				OnEvict:    func(key string) { c.cacheEvent(EventEvicted, "throttle", "", "", key) },
				OnOverflow: func(key string) { c.cacheEvent(EventOverflow, "throttle", "", "", key) },
			})
		}
	}
	if l := p.RateLimit; l != nil {
		cp.limiters = ratelimit.NewKeyed(ratelimit.KeyedConfig{
			Rate:       l.Rate,
			Burst:      l.Burst,
			MaxKeys:    c.maxKeys,
			OnEvict:    func(key string) { c.cacheEvent(EventEvicted, "ratelimit", "", "", key) },
			OnOverflow: func(key string) { c.cacheEvent(EventOverflow, "ratelimit", "", "", key) },
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
// [DisableRetry], [WithAttemptTimeout], [WithIdempotency]) are read from the
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
// method's policy has no breaker. When the client's bounded state is full
// of breakers in use, it is the policy's shared overflow breaker (see
// "Bounded state" in the package documentation).
func (c *Client) Breaker(target, fullMethod string) *breaker.Breaker {
	return c.state(target, fullMethod).guard()
}

// state returns the cached state of method on target, building it on
// first use. Looking up an existing state takes no lock and allocates
// nothing; building one costs the same however many states exist.
//
// A state is built before it is offered to the cache, so that no hook (the
// observer's events, the TargetBudget function) runs while the cache holds
// its lock; when two calls build one at once, the cache keeps the first
// and the other is dropped unused.
func (c *Client) state(target, method string) *methodState {
	key := stateKey{target, method}
	if ms, ok := c.states.Get(key); ok {
		return ms
	}
	built := c.newState(target, method, false)
	ms, ok := c.states.GetOrCreate(key, func() *methodState { return built })
	if ok && ms == built && built.breaker != nil && c.onBreaker != nil {
		if release := c.onBreaker(built.c.name+" "+scopeKey(ScopeMethod, target, method), built.breaker); release != nil {
			release = sync.OnceFunc(release)
			built.release.Store(&release)
			if cur, still := c.states.Peek(key); !still || cur != built {
				release() // evicted before its release was stored
			}
		}
	}
	if !ok {
		// Every cached state guards calls in flight or a breaker that is
		// not closed: serve this call with a state of its own, guarded by
		// the policy's overflow breaker and bulkhead.
		c.cacheEvent(EventOverflow, "state", target, method, scopeKey(ScopeMethod, target, method))
		ms = c.newState(target, method, true)
	}
	return ms
}

// overflowName is the name of the breaker shared by the calls whose state
// found no room in the client's bounded state.
const overflowName = "(overflow)"

// idle reports whether the state may be evicted: the breaker it owns is
// closed in automatic mode, the bulkhead it owns holds and queues nothing
// and the throttle it owns rejects nothing. A state that guards calls in flight or holds a breaker that is
// not closed stays, so that evicting it cannot hand the method a fresh
// breaker or bulkhead while the old one still protects the target.
// Breakers and bulkheads shared by a service or target live in their own
// bounded registries, which apply the same rule.
func (ms *methodState) idle() bool {
	if b := ms.breaker; b != nil && !b.Idle() {
		return false
	}
	if bh := ms.bulkhead; bh != nil {
		if m := bh.Metrics(); m.InFlight > 0 || m.Waiting > 0 {
			return false
		}
	}
	if t := ms.throttle; t != nil && !t.Idle() {
		return false
	}
	return true
}

// budgetFor returns the per-target budget of target.
func (c *Client) budgetFor(target string) retry.Budget {
	if b, ok := c.budgets.Get(target); ok {
		return b
	}
	b, _ := c.budgets.GetOrCreate(target, func() retry.Budget {
		if b := c.newBudget(target); b != nil && b != NoBudget {
			return b
		}
		return nil
	})
	return b
}

// resolveBudget returns the budget a policy's field selects.
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
// to one target, built once. It is read-only after newState but for its
// counters, so calls use it concurrently without locks.
type methodState struct {
	// The fields every unary call reads come first, so that a call of a
	// method whose state is no longer in the processor's caches (one of
	// many keys) fetches few cache lines of it.
	c *compiled
	// obs is the client's: what calls hear, nil when nobody listens. A
	// call loads it once and keeps what it found for its start and end.
	obs            *atomic.Pointer[Observer]
	retry          *retry.Policy // PatternRetry
	attemptTimeout time.Duration
	maxAttempts    int
	pattern        Pattern
	idempotent     bool
	// admitMayWait says that admit may block before an attempt: the
	// rate limit waits for a permit, or the bulkhead queues.
	admitMayWait bool
	// clockAtEnd says that an attempt reads the clock once when the
	// invoker returns, and shares that reading with the breaker, the
	// budget and the hedging histogram: set when the budget or the
	// histogram needs the time anyway. Otherwise nothing reads it but a
	// breaker whose window needs it.
	clockAtEnd bool
	// breaker and bulkhead are the state's own (ScopeMethod, or the
	// policy's overflow ones); for a scope shared by several methods they
	// are nil and the registries below hold them under breakerKey and
	// bulkheadKey, looked up on every attempt so that a registry sees
	// which ones are in use.
	breaker  *breaker.Breaker
	bulkhead *bulkhead.Bulkhead
	// throttle is the state's own throttle (ScopeMethod, or the policy's
	// overflow one); for a shared scope, throttles holds it under
	// throttleKey.
	throttle    *throttle.Throttle
	limiter     *ratelimit.Keyed      // nil: no rate limit
	throttles   *throttle.Registry    // checked only when throttle is nil
	breakers    *breaker.Registry     // checked only when breaker is nil
	bulkheads   *bulkhead.Partitioned // checked only when bulkhead is nil
	budget      retry.Budget          // the budget retries or hedges draw on; nil: none
	timedBudget retry.TimedBudget     // budget, when it takes the time of an attempt's end; nil otherwise
	hist        *latencyHistogram     // PatternHedging with a percentile

	method, target string
	breakerKey     string
	bulkheadKey    string
	throttleKey    string
	limiterKey     string        // the scope key of the limiter
	limited        atomic.Uint64 // attempts the rate limit refused
	// release is what Config.OnBreakerCreated returned for the breaker
	// the state owns; nil when none. Run once when the state is evicted.
	release atomic.Pointer[func()]
	// respType is the method's response type from protoregistry, nil
	// when unknown; streams drain ended attempts into it.
	respType protoreflect.MessageType
}

// newState builds the state of method on target; overflow selects the
// policy's overflow breaker and bulkhead instead of new ones of its own.
func (c *Client) newState(target, method string, overflow bool) *methodState {
	cp := c.policyFor(method)
	p := &cp.p
	ms := &methodState{c: cp, obs: &c.obs, method: method, target: target, maxAttempts: 1, respType: responseType(method)}
	switch p.Idempotency {
	case AlwaysIdempotent:
		ms.idempotent = true
	case NeverIdempotent:
		ms.idempotent = false
	default:
		ms.idempotent = classify.IdempotentByDescriptor(method)
	}
	switch {
	case cp.breakers != nil:
		ms.breakers, ms.breakerKey = cp.breakers, scopeKey(p.Breaker.Scope, target, method)
	case overflow:
		ms.breaker = cp.overBreaker
	case cp.overBreaker != nil:
		bc := cp.breakerCfg
		bc.Name = scopeKey(ScopeMethod, target, method)
		ms.breaker = breaker.New(bc)
	}
	switch {
	case cp.bulkheads != nil:
		ms.bulkheads, ms.bulkheadKey = cp.bulkheads, scopeKey(p.Bulkhead.Scope, target, method)
	case overflow:
		ms.bulkhead = cp.overBulkhead
	case cp.overBulkhead != nil:
		ms.bulkhead = bulkhead.NewFromConfig(cp.bulkheadCfg)
	}
	switch {
	case cp.throttles != nil:
		ms.throttles, ms.throttleKey = cp.throttles, scopeKey(p.Throttle.Scope, target, method)
	case overflow:
		ms.throttle = cp.overThrottle
	case cp.overThrottle != nil:
		ms.throttle = throttle.New(cp.throttleCfg)
	}
	if cp.limiters != nil {
		ms.limiter, ms.limiterKey = cp.limiters, scopeKey(p.RateLimit.Scope, target, method)
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
		rc := retry.Config{
			MaxAttempts: ms.maxAttempts,
			Backoff:     cp.backoff,
			Jitter:      r.jitter(),
			Budget:      c.resolveBudget(r.Budget, target),
		}
		ms.budget = rc.Budget
		ms.retryHooks(&rc)
		ms.retry = retry.NewFromConfig(rc)
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
	ms.admitMayWait = p.RateLimit != nil && p.RateLimit.Wait || p.Bulkhead != nil && p.Bulkhead.Queue > 0
	ms.timedBudget, _ = ms.budget.(retry.TimedBudget)
	ms.clockAtEnd = ms.timedBudget != nil || ms.hist != nil
	return ms
}

// guard returns the breaker of the state's calls, nil without one.
func (ms *methodState) guard() *breaker.Breaker {
	if ms.breaker != nil || ms.breakers == nil {
		return ms.breaker
	}
	return ms.breakers.Get(ms.breakerKey)
}

// throttleFor returns the throttle of the state's calls, nil without one.
func (ms *methodState) throttleFor() *throttle.Throttle {
	if ms.throttle != nil || ms.throttles == nil {
		return ms.throttle
	}
	return ms.throttles.Get(ms.throttleKey)
}

// bulkheadFor returns the bulkhead of the state's calls, nil without one.
func (ms *methodState) bulkheadFor() *bulkhead.Bulkhead {
	if ms.bulkhead != nil || ms.bulkheads == nil {
		return ms.bulkhead
	}
	return ms.bulkheads.Get(ms.bulkheadKey)
}

// retryHooks forwards the retry engine's events to the observer, if
// anybody listens when they happen.
func (ms *methodState) retryHooks(rc *retry.Config) {
	rc.OnRetry = func(ctx context.Context, attempt int, err error, delay time.Duration) {
		if obs := ms.obs.Load(); obs != nil {
			pe, ok := errors.AsType[*pushbackError](err)
			if ok {
				_, ok = pe.RetryDelay()
			}
			obs.event(ctx, Event{Kind: EventRetry, Method: ms.method, Target: ms.target, Attempt: attempt, Err: err, Delay: delay, PushbackHonoured: ok})
		}
	}
	rc.OnExhausted = func(ctx context.Context, attempts int, err error) {
		ms.retryEvent(ctx, EventRetriesExhausted, attempts, err, 0)
	}
	rc.OnBudgetDenied = func(ctx context.Context, attempt int, err error) {
		ms.retryEvent(ctx, EventBudgetDenied, attempt, err, 0)
	}
	rc.OnDeadline = func(ctx context.Context, attempt int, err error, delay time.Duration) {
		ms.retryEvent(ctx, EventDeadline, attempt, err, delay)
	}
}

// retryEvent reports one of the retry engine's events to the observer, if
// anybody listens.
func (ms *methodState) retryEvent(ctx context.Context, kind EventKind, attempt int, err error, delay time.Duration) {
	if obs := ms.obs.Load(); obs != nil {
		obs.event(ctx, Event{Kind: kind, Method: ms.method, Target: ms.target, Attempt: attempt, Err: err, Delay: delay})
	}
}

// rpc is one intercepted call, as grpc hands it to an interceptor.
type rpc struct {
	method     string
	req, reply any
	cc         *grpc.ClientConn
	invoker    grpc.UnaryInvoker
	opts       []grpc.CallOption
	// obs is the observers the call started with, which it keeps for its
	// end and every attempt; nil when nobody listens.
	obs *Observer
}

// call runs one logical call through the pipeline: default timeout,
// fallback, then retry, hedging or a single attempt.
func (ms *methodState) call(ctx context.Context, r *rpc) error {
	p := &ms.c.p
	ov := readOverrides(r.opts)
	pattern, idempotent, maxAttempts := ms.pattern, ms.idempotent, ms.maxAttempts
	if ov.idempotent != FromDescriptor {
		idempotent = ov.idempotent == AlwaysIdempotent
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

	obs := ms.obs.Load()
	r.obs = obs
	var info CallInfo
	if obs != nil {
		info = CallInfo{Method: ms.method, Target: ms.target, Pattern: pattern, MaxAttempts: maxAttempts, Idempotent: idempotent}
		ctx = obs.callStart(ctx, info)
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
			obs.event(ctx, Event{Kind: EventFallback, Method: ms.method, Target: ms.target, Err: err})
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
		obs.callEnd(callCtx, info, err)
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
		var d retry.Decision
		switch {
		case res.end.IsZero():
			d = rc.Next(ctx, err)
		case err != nil:
			// The observer's hooks, if any, ran since the attempt ended
			// and may have taken long: whether the next wait fits the
			// deadline is measured from now.
			d = rc.NextAt(ctx, err, time.Now())
		default:
			d = rc.NextAt(ctx, nil, res.end)
		}
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
