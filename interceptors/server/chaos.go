package server

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
)

// Fault is what the chaos interceptor does to the calls of one method (or
// of every method). The zero value does nothing; each kind of fault is
// enabled by its own rate or duration.
//
// Per call, in this order: the call is delayed (Latency, LatencyMax,
// TailRate, TailLatency), then it fails with Code at ErrorRate without
// running the handler, and otherwise a stream is aborted at AbortRate after
// AbortAfter messages.
type Fault struct {
	// ErrorRate is the share of calls, in [0, 1], failed with Code before
	// the handler runs. The default, zero, fails none.
	ErrorRate float64
	// Code is the status code of injected errors and aborts. The default,
	// OK (zero), means UNAVAILABLE.
	Code codes.Code
	// Pushback, when above zero, is sent with injected errors and aborts as
	// a google.rpc.RetryInfo detail and a grpc-retry-pushback-ms trailer.
	// The default, zero, sends neither. Must not be negative.
	Pushback time.Duration
	// Latency delays every call by this much; with LatencyMax, it is the
	// lower end of a uniform distribution. The default, zero, adds no
	// delay. The delay ends early, failing the call with its context's
	// status, when the call's context is done.
	Latency time.Duration
	// LatencyMax, when set, makes the delay uniform in [Latency,
	// LatencyMax]. The default, zero, means a fixed Latency. Must be zero or
	// at least Latency.
	LatencyMax time.Duration
	// TailRate is the share of calls, in [0, 1], delayed by TailLatency
	// instead: a simple heavy tail. The default, zero, has no tail.
	TailRate float64
	// TailLatency is the delay of the tail. Required when TailRate is set.
	TailLatency time.Duration
	// AbortRate is the share of streams, in [0, 1], aborted with Code once
	// they have sent AbortAfter messages: the next send fails and so does
	// the stream, whatever the handler returns. A stream that ends before
	// it tries to send more than AbortAfter messages is not aborted. The
	// default, zero, aborts none. It has no effect on unary calls.
	AbortRate float64
	// AbortAfter is how many messages an aborted stream sends first; zero
	// aborts at the first send. Must not be negative, and needs AbortRate.
	AbortAfter int
}

// validate reports the first bad field of f, named with prefix.
func (f Fault) validate(prefix string) error {
	rate := func(name string, r float64) error {
		if math.IsNaN(r) || r < 0 || r > 1 {
			return fmt.Errorf("server: %s.%s: %v, must be in [0, 1]", prefix, name, r)
		}
		return nil
	}
	if err := rate("ErrorRate", f.ErrorRate); err != nil {
		return err
	}
	if err := rate("TailRate", f.TailRate); err != nil {
		return err
	}
	if err := rate("AbortRate", f.AbortRate); err != nil {
		return err
	}
	switch {
	case f.Code > codes.Unauthenticated:
		return fmt.Errorf("server: %s.Code: %v, must be a status code from 1 to 16 (0 means UNAVAILABLE)", prefix, f.Code)
	case f.Pushback < 0:
		return fmt.Errorf("server: %s.Pushback: %v, must be at least 0", prefix, f.Pushback)
	case f.Latency < 0:
		return fmt.Errorf("server: %s.Latency: %v, must be at least 0", prefix, f.Latency)
	case f.LatencyMax != 0 && f.LatencyMax < f.Latency:
		return fmt.Errorf("server: %s.LatencyMax: %v, must be 0 or at least Latency (%v)", prefix, f.LatencyMax, f.Latency)
	case f.TailLatency < 0:
		return fmt.Errorf("server: %s.TailLatency: %v, must be at least 0", prefix, f.TailLatency)
	case f.TailRate > 0 && f.TailLatency == 0:
		return fmt.Errorf("server: %s.TailLatency: 0, must be set when TailRate (%v) is", prefix, f.TailRate)
	case f.AbortAfter < 0:
		return fmt.Errorf("server: %s.AbortAfter: %d, must be at least 0", prefix, f.AbortAfter)
	case f.AbortAfter > 0 && f.AbortRate == 0:
		return fmt.Errorf("server: %s.AbortAfter: %d, set but AbortRate is 0", prefix, f.AbortAfter)
	}
	return nil
}

// active reports whether f injects anything.
func (f Fault) active() bool {
	return f.ErrorRate > 0 || f.Latency > 0 || f.LatencyMax > 0 || f.TailRate > 0 || f.AbortRate > 0
}

// FaultConfig is a chaos schedule: which faults to inject into which
// methods. The zero value injects nothing.
type FaultConfig struct {
	// All applies to every method that Methods does not name.
	All Fault
	// Methods applies a Fault to one method ("/pkg.Service/Method") or to
	// every method of a service ("/pkg.Service/"), instead of All. A method
	// entry wins over its service's entry. A zero Fault exempts the method
	// from All.
	Methods map[string]Fault
}

// Validate reports the first bad field, naming it and the bad value. The
// zero value is valid.
func (c FaultConfig) Validate() error {
	if err := c.All.validate("FaultConfig.All"); err != nil {
		return err
	}
	// In sorted order, so that the first error reported is always the same.
	for _, m := range slices.Sorted(maps.Keys(c.Methods)) {
		if err := checkMethodPattern(m); err != nil {
			return fmt.Errorf("server: FaultConfig.Methods[%q]: %v", m, err)
		}
		if err := c.Methods[m].validate(fmt.Sprintf("FaultConfig.Methods[%q]", m)); err != nil {
			return err
		}
	}
	return nil
}

// ChaosConfig configures a [Chaos] interceptor. The zero value injects
// nothing, with seed 0.
type ChaosConfig struct {
	// Seed seeds the random source that decides which calls get which
	// fault. The same seed gives the same decisions for the same sequence
	// of calls; zero is a seed like any other.
	Seed uint64
	// Faults is the initial schedule; [Chaos.Set] replaces it. The
	// default, the zero FaultConfig, injects nothing.
	Faults FaultConfig
}

// Validate reports the first bad field of Faults. The zero value is valid.
func (c ChaosConfig) Validate() error { return c.Faults.Validate() }

// compiledFault is a Fault with its injected error prepared.
type compiledFault struct {
	Fault
	err     error       // immutable, shared by every faulted call
	trailer metadata.MD // immutable; nil without pushback
}

// schedule is a validated FaultConfig, immutable once built.
type schedule struct {
	cfg      FaultConfig
	all      *compiledFault // nil when inactive
	methods  map[string]*compiledFault
	services map[string]*compiledFault
}

func compile(cfg FaultConfig) *schedule {
	s := &schedule{cfg: FaultConfig{All: cfg.All, Methods: maps.Clone(cfg.Methods)}}
	s.all = compileFault(cfg.All)
	for m, f := range cfg.Methods {
		target := &s.methods
		if strings.HasSuffix(m, "/") {
			target = &s.services
		}
		if *target == nil {
			*target = map[string]*compiledFault{}
		}
		(*target)[m] = compileFault(f) // nil for a zero Fault: exempt from All
	}
	return s
}

func compileFault(f Fault) *compiledFault {
	if !f.active() {
		return nil
	}
	if f.Code == codes.OK {
		f.Code = codes.Unavailable
	}
	c := &compiledFault{Fault: f}
	st := status.New(f.Code, "server: injected fault")
	if f.Pushback > 0 {
		st, c.trailer = withPushback(st, f.Pushback)
	}
	c.err = interceptors.NewStatusError(st, ErrFaultInjected)
	return c
}

// lookup returns the fault for fullMethod, or nil. It allocates nothing.
func (s *schedule) lookup(fullMethod string) *compiledFault {
	if f, ok := s.methods[fullMethod]; ok {
		return f
	}
	if f, ok := s.services[serviceOf(fullMethod)]; ok {
		return f
	}
	return s.all
}

// Chaos is a fault-injection interceptor for tests and drills: it injects
// error codes, latency and stream aborts into calls, as its current
// [FaultConfig] says, deciding with a seeded random source. With the zero
// FaultConfig it injects nothing and costs one atomic load per call.
//
// [Chaos.Set] replaces the schedule at run time, atomically: each call
// sees either the old schedule or the new one, never a mix. Exempt methods
// (health, reflection, [WithExempt]) are never faulted.
//
// Decisions are deterministic for a seed: every call to a faulted method
// draws the same number of random values, in one critical section, so that
// calls made one after another get the same faults run after run.
// Concurrent calls draw in the order they arrive.
//
// A Chaos is safe for concurrent use. Create it with [NewChaos]; the zero
// value is not usable.
type Chaos struct {
	exempt *exemptions
	obs    Observer
	sched  atomic.Pointer[schedule]

	mu  sync.Mutex
	rng *rand.Rand
}

// NewChaos returns a Chaos configured by cfg and opts, or an error naming
// the bad field when cfg or an option is invalid.
func NewChaos(cfg ChaosConfig, opts ...Option) (*Chaos, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o, ex, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	c := &Chaos{exempt: ex, obs: o.observer, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
	c.sched.Store(compile(cfg.Faults))
	return c, nil
}

// Set replaces the schedule atomically: calls that start afterwards see
// the new one; calls already delayed or running keep the old one. An
// invalid cfg leaves the schedule unchanged and returns an error naming
// the bad field. Set(FaultConfig{}) stops every injection. It does not
// reseed the random source.
func (c *Chaos) Set(cfg FaultConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	c.sched.Store(compile(cfg))
	return nil
}

// Faults returns the current schedule, with its own copy of the Methods
// map.
func (c *Chaos) Faults() FaultConfig {
	cfg := c.sched.Load().cfg
	cfg.Methods = maps.Clone(cfg.Methods)
	return cfg
}

// decision is what happens to one call.
type decision struct {
	fault *compiledFault // nil: nothing
	delay time.Duration
	fail  bool
	abort bool
}

// decide draws the faults of one call to fullMethod.
func (c *Chaos) decide(fullMethod string) decision {
	f := c.sched.Load().lookup(fullMethod)
	if f == nil {
		return decision{}
	}
	// Always four draws, whatever f enables, so that a seed gives the same
	// sequence of decisions under every schedule.
	c.mu.Lock()
	uErr, uTail, uLat, uAbort := c.rng.Float64(), c.rng.Float64(), c.rng.Float64(), c.rng.Float64()
	c.mu.Unlock()
	return decision{
		fault: f,
		delay: sampleLatency(f.Latency, f.LatencyMax, f.TailRate, f.TailLatency, uTail, uLat),
		fail:  uErr < f.ErrorRate,
		abort: uAbort < f.AbortRate,
	}
}

// sampleLatency returns the delay of one call: tail when uTail falls in
// tailRate, else uniform in [lo, hi] (or lo when hi <= lo) by uLat in
// [0, 1). The result is always within [lo, max(lo, hi)] or equal to tail.
func sampleLatency(lo, hi time.Duration, tailRate float64, tail time.Duration, uTail, uLat float64) time.Duration {
	if uTail < tailRate {
		return tail
	}
	if hi <= lo {
		return lo
	}
	span := hi - lo // both non-negative, so no overflow
	d := time.Duration(uLat * float64(span))
	// Rounding of the float may overshoot, and a uLat outside [0, 1) must
	// not escape the bounds.
	d = min(max(d, 0), span)
	return lo + d
}

// inject applies the decision's delay and error. It returns a non-nil
// error when the call must fail without running the handler.
func (c *Chaos) inject(ctx context.Context, fullMethod string, d decision, setTrailer func(metadata.MD)) error {
	if d.delay > 0 {
		c.obs.Observe(ctx, Event{Kind: EventFaultLatency, FullMethod: fullMethod, Delay: d.delay})
		t := time.NewTimer(d.delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	if d.fail {
		c.fail(ctx, fullMethod, d.fault, EventFaultError, 0, setTrailer)
		return d.fault.err
	}
	return nil
}

// fail reports an injected error or abort and sets its trailer.
func (c *Chaos) fail(ctx context.Context, fullMethod string, f *compiledFault, kind EventKind, sent int, setTrailer func(metadata.MD)) {
	if f.trailer != nil {
		setTrailer(f.trailer)
	}
	c.obs.Observe(ctx, Event{Kind: kind, FullMethod: fullMethod, Code: f.Code, Delay: f.Pushback, Messages: sent})
}

// UnaryServerInterceptor returns the unary interceptor.
func (c *Chaos) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if c.exempt.match(info.FullMethod) {
			return handler(ctx, req)
		}
		return c.unary(ctx, req, info, handler)
	}
}

func (c *Chaos) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	d := c.decide(info.FullMethod)
	if d.fault == nil {
		return handler(ctx, req)
	}
	if err := c.inject(ctx, info.FullMethod, d, func(md metadata.MD) { _ = grpc.SetTrailer(ctx, md) }); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// StreamServerInterceptor returns the stream interceptor.
func (c *Chaos) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if c.exempt.match(info.FullMethod) {
			return handler(srv, ss)
		}
		return c.stream(srv, ss, info, handler)
	}
}

func (c *Chaos) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	d := c.decide(info.FullMethod)
	if d.fault == nil {
		return handler(srv, ss)
	}
	if err := c.inject(ss.Context(), info.FullMethod, d, ss.SetTrailer); err != nil {
		return err
	}
	if !d.abort {
		return handler(srv, ss)
	}
	as := &abortStream{ServerStream: ss, c: c, method: info.FullMethod, fault: d.fault}
	err := handler(srv, as)
	if as.aborted {
		return d.fault.err
	}
	return err
}

// abortStream fails the send after the first AbortAfter messages. It is
// used by the handler's goroutine only, as grpc.ServerStream's SendMsg
// must be.
type abortStream struct {
	grpc.ServerStream
	c       *Chaos
	method  string
	fault   *compiledFault
	sent    int
	aborted bool
}

// SendMsg sends m, unless AbortAfter messages were sent already: then it
// aborts the stream and returns the injected error.
func (s *abortStream) SendMsg(m any) error {
	if s.aborted {
		return s.fault.err
	}
	if s.sent >= s.fault.AbortAfter {
		s.aborted = true
		s.c.fail(s.Context(), s.method, s.fault, EventFaultAbort, s.sent, s.SetTrailer)
		return s.fault.err
	}
	if err := s.ServerStream.SendMsg(m); err != nil {
		return err
	}
	s.sent++
	return nil
}
