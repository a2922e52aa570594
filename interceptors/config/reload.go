package config

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/internal/keycache"
	configv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/config/v1"
	"github.com/engineeringlabs/grpc-resilience/ratelimit"
	"github.com/engineeringlabs/grpc-resilience/retry"
)

// ReloaderConfig configures a [Reloader]: the configuration it starts
// with and what a file cannot say. The zero ReloaderConfig is valid: an
// empty configuration (calls run unchanged, the server pipeline only
// rejects expired deadlines), observed by nobody. NewReloader copies it.
type ReloaderConfig struct {
	// Config is the configuration applied until the first
	// [Reloader.Update]. Nil: an empty configuration.
	Config *Config
	// Observer observes every client pipeline (see
	// [interceptors.Config].Observer). Zero: nothing observed.
	Observer interceptors.Observer
	// ServerObserver observes the server pipeline (see
	// [server.Config].Observer). Zero: nothing observed.
	ServerObserver server.Observer
	// OnBreakerCreated is given to every client pipeline (see
	// [interceptors.Config].OnBreakerCreated), for instance to join their
	// breakers to a fleet (redisfleet.Breakers.Join). Each method policy
	// of the file is a pipeline of its own, whose policy is named
	// "default" in the names the hook gets. Nil: none.
	OnBreakerCreated func(name string, b *breaker.Breaker) (release func())
	// RateLimitStore is given to the server pipeline's rate limit, when
	// the configuration sets one (see [server.RateLimitConfig].Store),
	// for instance to share its quotas across a fleet
	// (redisfleet.Limiter.Quota). Nil: each process decides alone.
	RateLimitStore func(quota string, q server.RateQuota) ratelimit.Store
}

// DialOptions returns the dial options that apply c's client policies:
// grpc.WithDisableRetry(), so that gRPC's own retries do not multiply the
// attempts of the pipeline's, and the pipeline's unary and stream
// interceptors. The pipeline is a [Reloader] that is never updated and
// observed by nobody; for observers, use [NewReloader] with a
// [ReloaderConfig].
func (c *Config) DialOptions() ([]grpc.DialOption, error) {
	r, err := NewReloader(ReloaderConfig{Config: c})
	if err != nil {
		return nil, err
	}
	return r.DialOptions(), nil
}

// ServerOptions returns the server options that install c's server
// pipeline (see [server.New]) as the first unary and stream interceptors,
// observed by nobody; for an observer, use [NewReloader] with a
// [ReloaderConfig].
func (c *Config) ServerOptions() ([]grpc.ServerOption, error) {
	s, err := server.New(c.ServerConfig())
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(s.StreamServerInterceptor()),
	}, nil
}

// Reloader applies a Config to client calls and server calls, and swaps
// in a new Config while calls are in flight.
//
// On the client, each policy of the file gets a pipeline of its own (an
// [interceptors.Client] built for that policy alone), and every call looks
// up the current pipeline of its method, service or the default with one
// atomic load. [Reloader.Update] keeps the pipeline of every policy whose
// text did not change, wherever it moved in the file, so that its circuit
// breakers, bulkheads, budgets and hedging latencies survive the swap; a
// changed policy gets a new pipeline with fresh state. Calls that started
// before a swap finish in the pipeline they started in. Changing
// target_budget renews every client pipeline, since each keeps the budget
// of each target it called.
//
// On the server, the pipeline is kept when the server section did not
// change except for chaos faults, which are swapped in with
// [server.Chaos.Set]; otherwise a new pipeline (with fresh bulkheads) takes
// the calls that start after the swap.
//
// A Reloader is safe for concurrent use. Create it with NewReloader; the
// zero value is not usable.
type Reloader struct {
	opts   ReloaderConfig // without Config
	mu     sync.Mutex     // serialises Update
	client atomic.Pointer[clientState]
	server atomic.Pointer[serverState]
	cfg    atomic.Pointer[Config]
}

// clientState is one generation of client pipelines.
type clientState struct {
	def       *pipeline
	methods   map[string]*pipeline
	services  map[string]*pipeline
	byKey     map[string]*pipeline // by policy text, for reuse by the next generation
	budgetKey string
}

// pipeline is the client pipeline of one policy.
type pipeline struct {
	client  *interceptors.Client
	call    grpc.UnaryClientInterceptor
	stream  grpc.StreamClientInterceptor
	budgets *targetBudgets
}

// serverState is one generation of the server pipeline.
type serverState struct {
	key    string // the server section without its faults
	faults *configv1.Chaos
	p      *server.Server
	unary  grpc.UnaryServerInterceptor
	stream grpc.StreamServerInterceptor
}

// NewReloader returns a Reloader that applies rc.Config until the next
// Update, with rc's observers.
func NewReloader(rc ReloaderConfig) (*Reloader, error) {
	cfg := rc.Config
	rc.Config = nil
	r := &Reloader{opts: rc}
	if err := r.Update(cfg); err != nil {
		return nil, err
	}
	return r, nil
}

// Update swaps in cfg atomically: calls that start afterwards use it,
// calls in flight finish as they started. Pipelines of unchanged policies
// are kept with their state, as the type's documentation says. On error,
// which only a server pipeline that cannot be built causes, the previous
// configuration stays in force. A nil cfg is an empty configuration.
func (r *Reloader) Update(cfg *Config) error {
	if cfg == nil {
		cfg = &Config{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cs, err := r.buildClient(cfg, r.client.Load())
	if err != nil {
		return err
	}
	ss, setFaults, err := r.buildServer(cfg, r.server.Load())
	if err != nil {
		return err
	}
	if setFaults != nil {
		if err := setFaults(); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	r.client.Store(cs)
	r.server.Store(ss)
	r.cfg.Store(cfg)
	return nil
}

// Config returns the configuration in force.
func (r *Reloader) Config() *Config { return r.cfg.Load() }

// canonical returns a text that is equal for equal messages, in one
// binary: deterministic wire encoding.
func canonical(m proto.Message) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		// A message that went through validation always marshals; if
		// not, a unique key only costs the reuse.
		return fmt.Sprintf("unmarshalable %p", m)
	}
	return string(b)
}

// policyKey is the text of a policy without its names.
func policyKey(mp *configv1.MethodPolicy) string {
	c := proto.Clone(mp).(*configv1.MethodPolicy)
	c.Name = nil
	return canonical(c)
}

func (r *Reloader) buildClient(cfg *Config, old *clientState) (*clientState, error) {
	msg := cfg.msg
	cs := &clientState{
		methods:   map[string]*pipeline{},
		services:  map[string]*pipeline{},
		byKey:     map[string]*pipeline{},
		budgetKey: canonical(msg.GetTargetBudget()),
	}
	reuse := old != nil && old.budgetKey == cs.budgetKey
	var budgets *targetBudgets
	for _, e := range cfg.entries {
		k := policyKey(msg.GetMethodPolicies()[e.policy])
		p := cs.byKey[k]
		if p == nil && reuse {
			p = old.byKey[k]
		}
		if p == nil {
			if budgets == nil {
				budgets = r.targetBudgets(cfg, old, reuse)
			}
			c, err := interceptors.NewClient(interceptors.Config{
				Default:          cfg.policy(e.policy),
				Observer:         r.opts.Observer,
				TargetBudget:     budgets.get,
				OnBreakerCreated: r.opts.OnBreakerCreated,
			})
			if err != nil {
				return nil, fmt.Errorf("config: %w", err)
			}
			p = &pipeline{client: c, call: c.UnaryClientInterceptor(), stream: c.StreamClientInterceptor(), budgets: budgets}
		}
		cs.byKey[k] = p
		switch {
		case e.pattern == "":
			cs.def = p
		case e.pattern[0] == '/':
			cs.methods[e.pattern] = p
		default:
			cs.services[e.pattern] = p
		}
	}
	return cs, nil
}

// targetBudgets returns the per-target budgets new pipelines share with
// the pipelines kept from the previous generation.
func (r *Reloader) targetBudgets(cfg *Config, old *clientState, reuse bool) *targetBudgets {
	if reuse {
		for _, p := range old.byKey {
			return p.budgets
		}
	}
	seed := maphash.MakeSeed()
	tb := &targetBudgets{m: keycache.New(keycache.Config[string, retry.Budget]{
		Max:  interceptors.DefaultMaxKeys,
		Hash: func(s string) uint64 { return maphash.String(seed, s) },
	})}
	if b := cfg.msg.GetTargetBudget(); b != nil {
		tb.newBudget = func() retry.Budget {
			var c conv
			return c.budget("target_budget", b, false)
		}
	} else {
		tb.newBudget = func() retry.Budget { return interceptors.DefaultTargetBudget("") }
	}
	return tb
}

// targetBudgets are the retry budgets of each target, shared by every
// pipeline of one Reloader generation and those kept from it. They are a
// bounded cache like each Client's own (see "Bounded state" in package
// interceptors): the budget of a target unused for a while makes room.
type targetBudgets struct {
	newBudget func() retry.Budget
	m         *keycache.Cache[string, retry.Budget]
}

// get returns the budget of target, creating it on first use.
func (tb *targetBudgets) get(target string) retry.Budget {
	if b, ok := tb.m.Get(target); ok {
		return b
	}
	b, _ := tb.m.GetOrCreate(target, tb.newBudget) // every entry is evictable
	return b
}

func (r *Reloader) buildServer(cfg *Config, old *serverState) (*serverState, func() error, error) {
	sc := cfg.msg.GetServer()
	var faults *configv1.Chaos
	keyMsg := &configv1.ServerConfig{}
	if sc != nil {
		keyMsg = proto.Clone(sc).(*configv1.ServerConfig)
		if ch := keyMsg.GetChaos(); ch != nil {
			faults = &configv1.Chaos{All: ch.All, Methods: ch.Methods}
			ch.All, ch.Methods = nil, nil
		}
	}
	key := canonical(keyMsg)
	scfg := cfg.ServerConfig()
	if old != nil && old.key == key {
		if proto.Equal(old.faults, faults) {
			return old, nil, nil
		}
		ss := *old
		ss.faults = faults
		return &ss, func() error { return old.p.Chaos().Set(scfg.Chaos.Faults) }, nil
	}
	scfg.Observer = r.opts.ServerObserver
	if scfg.RateLimit.Rate != 0 || len(scfg.RateLimit.Methods) > 0 {
		scfg.RateLimit.Store = r.opts.RateLimitStore
	}
	p, err := server.New(scfg)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	return &serverState{key: key, faults: faults, p: p, unary: p.UnaryServerInterceptor(), stream: p.StreamServerInterceptor()}, nil, nil
}

// lookup returns the pipeline of method, or nil when no policy applies.
func (s *clientState) lookup(method string) *pipeline {
	if p, ok := s.methods[method]; ok {
		return p
	}
	if svc, _, ok := classify.SplitMethod(method); ok {
		if p, ok := s.services[svc]; ok {
			return p
		}
	}
	return s.def
}

// UnaryClientInterceptor returns the interceptor that runs each call
// through the pipeline of its method in the configuration in force when
// the call starts. A call that no policy applies to goes to the invoker
// unchanged. Errors are as [interceptors.Client.UnaryClientInterceptor]
// returns them.
func (r *Reloader) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if p := r.client.Load().lookup(method); p != nil {
			return p.call(ctx, method, req, reply, cc, invoker, opts...)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// StreamClientInterceptor returns the interceptor that runs each stream
// through the pipeline of its method in the configuration in force when
// the stream starts, as [interceptors.Client.StreamClientInterceptor]
// does. A stream that no policy applies to goes to the streamer unchanged.
func (r *Reloader) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if p := r.client.Load().lookup(method); p != nil {
			return p.stream(ctx, desc, cc, method, streamer, opts...)
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
}

// UnaryServerInterceptor returns the interceptor that runs each call
// through the server pipeline in force when the call starts.
func (r *Reloader) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return r.server.Load().unary(ctx, req, info, handler)
	}
}

// StreamServerInterceptor returns the interceptor that runs each stream
// through the server pipeline in force when the stream starts.
func (r *Reloader) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return r.server.Load().stream(srv, ss, info, handler)
	}
}

// DialOptions returns grpc.WithDisableRetry() and the reloading unary and
// stream client interceptors, for grpc.NewClient.
func (r *Reloader) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(r.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(r.StreamClientInterceptor()),
	}
}

// ServerOptions returns the reloading unary and stream server
// interceptors, for grpc.NewServer.
func (r *Reloader) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(r.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(r.StreamServerInterceptor()),
	}
}

// Breaker returns the circuit breaker that guards the calls of fullMethod
// to target in the configuration in force, as
// [interceptors.Client.Breaker] does; nil when the method's policy has no
// breaker or no policy applies.
func (r *Reloader) Breaker(target, fullMethod string) *breaker.Breaker {
	if p := r.client.Load().lookup(fullMethod); p != nil {
		return p.client.Breaker(target, fullMethod)
	}
	return nil
}

// Server returns the server pipeline in force, for instance to watch its
// bulkhead.
func (r *Reloader) Server() *server.Server { return r.server.Load().p }
