package server

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
)

// Config configures a server [Pipeline]. The zero value is a pipeline that
// only rejects calls whose deadline has already passed, and whose chaos
// stage injects nothing until [Chaos.Set] says otherwise.
type Config struct {
	// Exempt lists further methods ("/pkg.Service/Method") or services
	// ("/pkg.Service/") that go straight to the handler, on top of health
	// checking and server reflection, which always do. The default is none.
	Exempt []string
	// Observer hears about every shed call, deadline rejection, default
	// deadline and injected fault. The default, nil, is an observer that
	// does nothing.
	Observer Observer
	// Deadline configures deadline enforcement and the default deadline.
	// The zero value rejects only calls whose deadline has passed.
	Deadline DeadlineConfig
	// Bulkhead configures the bulkhead. The zero value has none.
	Bulkhead BulkheadConfig
	// Chaos configures fault injection. The zero value injects nothing.
	Chaos ChaosConfig
}

// Validate reports the first bad field, naming it and the bad value. The
// zero value is valid.
func (c Config) Validate() error {
	for i, m := range c.Exempt {
		if err := checkMethodPattern(m); err != nil {
			return fmt.Errorf("server: Config.Exempt[%d]: %q, %v", i, m, err)
		}
	}
	if err := c.Deadline.Validate(); err != nil {
		return err
	}
	if err := c.Bulkhead.Validate(); err != nil {
		return err
	}
	return c.Chaos.Validate()
}

// Pipeline is the server-side resilience pipeline: one unary and one stream
// interceptor that apply, outermost first, exemption, deadline
// enforcement, the default deadline, the bulkhead, fault injection and then
// the handler (see the package documentation for why in this order).
//
// A Pipeline is safe for concurrent use. Create it with [New]; the zero
// value is not usable.
type Pipeline struct {
	exempt   *exemptions
	deadline *Deadline
	bulkhead *Bulkhead
	chaos    *Chaos
}

// New returns the pipeline configured by cfg, or an error naming the bad
// field.
func New(cfg Config) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []Option{WithExempt(cfg.Exempt...), WithObserver(cfg.Observer)}
	ex, err := newExemptions("Config.Exempt", cfg.Exempt)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{exempt: ex}
	if p.deadline, err = NewDeadline(cfg.Deadline, opts...); err != nil {
		return nil, err
	}
	if p.bulkhead, err = NewBulkhead(cfg.Bulkhead, opts...); err != nil {
		return nil, err
	}
	if p.chaos, err = NewChaos(cfg.Chaos, opts...); err != nil {
		return nil, err
	}
	return p, nil
}

// Chaos returns the pipeline's fault injector, whose [Chaos.Set] changes
// the schedule at run time.
func (p *Pipeline) Chaos() *Chaos { return p.chaos }

// Bulkhead returns the pipeline's bulkhead; its [Bulkhead.Partitions] is
// nil when the bulkhead is disabled.
func (p *Pipeline) Bulkhead() *Bulkhead { return p.bulkhead }

// UnaryServerInterceptor returns the pipeline as one unary interceptor,
// for grpc.ChainUnaryInterceptor. A call rejected by a stage never reaches
// the later stages or the handler.
func (p *Pipeline) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if p.exempt.match(info.FullMethod) {
			return handler(ctx, req)
		}
		ctx, cancel, err := p.deadline.admit(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		if cancel != nil {
			defer cancel()
		}
		if p.bulkhead.parts == nil {
			return p.chaos.unary(ctx, req, info, handler)
		}
		return p.bulkhead.unary(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return p.chaos.unary(ctx, req, info, handler)
		})
	}
}

// StreamServerInterceptor returns the pipeline as one stream interceptor,
// for grpc.ChainStreamInterceptor. A stream rejected by a stage never
// reaches the later stages or the handler.
func (p *Pipeline) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if p.exempt.match(info.FullMethod) {
			return handler(srv, ss)
		}
		ctx, cancel, err := p.deadline.admit(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		if cancel != nil {
			defer cancel()
			ss = &contextStream{ServerStream: ss, ctx: ctx}
		}
		if p.bulkhead.parts == nil {
			return p.chaos.stream(srv, ss, info, handler)
		}
		return p.bulkhead.stream(srv, ss, info, func(srv any, ss grpc.ServerStream) error {
			return p.chaos.stream(srv, ss, info, handler)
		})
	}
}
