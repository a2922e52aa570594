package server

import (
	"context"
	"maps"
	"math"
	"math/rand/v2"
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

// validate reports every bad field of f, as FieldErrors named relative
// to f ("ErrorRate").
func (f Fault) validate() error {
	var p problems
	rate := func(name string, r float64) {
		if math.IsNaN(r) || r < 0 || r > 1 {
			p.add(name, r, "must be in [0, 1]")
		}
	}
	rate("ErrorRate", f.ErrorRate)
	rate("TailRate", f.TailRate)
	rate("AbortRate", f.AbortRate)
	if f.Code > codes.Unauthenticated {
		p.add("Code", f.Code, "must be a status code from 1 to 16 (0 means UNAVAILABLE)")
	}
	if f.Pushback < 0 {
		p.add("Pushback", f.Pushback, "must not be negative")
	}
	if f.Latency < 0 {
		p.add("Latency", f.Latency, "must not be negative")
	}
	if f.LatencyMax != 0 && f.LatencyMax < f.Latency {
		p.add("LatencyMax", f.LatencyMax, "must be 0 or at least Latency ("+f.Latency.String()+")")
	}
	switch {
	case f.TailLatency < 0:
		p.add("TailLatency", f.TailLatency, "must not be negative")
	case f.TailRate > 0 && f.TailLatency == 0:
		p.add("TailLatency", f.TailLatency, "must be set when TailRate is")
	}
	switch {
	case f.AbortAfter < 0:
		p.add("AbortAfter", f.AbortAfter, "must not be negative")
	case f.AbortAfter > 0 && f.AbortRate == 0:
		p.add("AbortAfter", f.AbortAfter, "set but AbortRate is 0")
	}
	return p.err()
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
	// every method of a service ("pkg.Service", or "/pkg.Service/"),
	// instead of All. A method entry wins over its service's entry. A zero
	// Fault exempts the method from All. Keys of other forms are invalid,
	// and so are two keys for the same service.
	Methods map[string]Fault
}

// Validate reports every bad field at once, each as a
// *[resilience.FieldError] whose Field is the path from FaultConfig, such
// as "All.ErrorRate" or "Methods[/pkg.Svc/M].Code", joined with
// [errors.Join], in the order of the keys. The zero value is valid.
func (c FaultConfig) Validate() error {
	var p problems
	p.nest("All", c.All.validate())
	checkMethods(&p, c.Methods, func(v Fault) error { return v.validate() })
	return p.err()
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

// Validate reports every bad field of Faults, as [FaultConfig.Validate]
// does, with Fields prefixed by "Faults.". The zero value is valid.
func (c ChaosConfig) Validate() error {
	var p problems
	p.nest("Faults", c.Faults.Validate())
	return p.err()
}

// compiledFault is a Fault with its injected error prepared.
type compiledFault struct {
	Fault
	err     error       // immutable, shared by every faulted call
	trailer metadata.MD // immutable; nil without pushback
}

// schedule is a validated FaultConfig, immutable once built.
type schedule struct {
	cfg    FaultConfig
	faults byMethod[*compiledFault] // nil: no fault; a method's nil entry exempts it from All
}

func compile(cfg FaultConfig) *schedule {
	s := &schedule{cfg: FaultConfig{All: cfg.All, Methods: maps.Clone(cfg.Methods)}}
	s.faults.def = compileFault(cfg.All)
	for key, f := range cfg.Methods {
		m, _ := methodPattern(key) // Validate accepted it
		s.faults.set(m, compileFault(f))
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
func (s *schedule) lookup(fullMethod string) *compiledFault { return s.faults.lookup(fullMethod) }

// Chaos is the fault-injection stage of a [Server], for tests and drills:
// it injects error codes, latency and stream aborts into calls, as its
// current [FaultConfig] says, deciding with a seeded random source. With
// the zero FaultConfig it injects nothing and costs one atomic load per
// call.
//
// [Chaos.Set] replaces the schedule at run time, atomically: each call
// sees either the old schedule or the new one, never a mix. Exempt methods
// (health, reflection, [Config.Exempt]) are never faulted.
//
// Decisions are deterministic for a seed: every call to a faulted method
// draws the same number of random values, in one critical section, so that
// calls made one after another get the same faults run after run.
// Concurrent calls draw in the order they arrive.
//
// A Chaos is safe for concurrent use. [Server.Chaos] returns the one of a
// Server; the zero value is not usable.
type Chaos struct {
	obs   Observer
	sched atomic.Pointer[schedule]

	mu  sync.Mutex
	rng *rand.Rand
}

// newChaos returns the Chaos of a valid cfg.
func newChaos(cfg ChaosConfig, obs Observer) *Chaos {
	c := &Chaos{obs: obs, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
	c.sched.Store(compile(cfg.Faults))
	return c
}

// Set replaces the schedule atomically: calls that start afterwards see
// the new one; calls already delayed or running keep the old one. An
// invalid cfg leaves the schedule unchanged and returns the error of
// [FaultConfig.Validate]. Set(FaultConfig{}) stops every injection. It
// does not reseed the random source.
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
		c.obs.emit(ctx, Event{Kind: EventFaultLatency, FullMethod: fullMethod, Delay: d.delay})
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
	c.obs.emit(ctx, Event{Kind: kind, FullMethod: fullMethod, Code: f.Code, Delay: f.Pushback, Messages: sent})
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
