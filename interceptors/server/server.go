package server

import (
	"context"
	"slices"
	"strconv"

	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/internal/keyhash"
)

// Config configures a [Server]. The zero value is a server pipeline that
// only rejects calls whose deadline has already passed, and whose chaos
// stage injects nothing until [Chaos.Set] says otherwise. [New] copies it:
// changing a Config afterwards changes nothing.
type Config struct {
	// Exempt lists further methods ("/pkg.Service/Method") or whole
	// services ("pkg.Service", or "/pkg.Service/") that go straight to the
	// handler, on top of health checking and server reflection, which
	// always do. The default is none. Other forms are invalid.
	Exempt []string
	// Observer hears about every shed call, rate-limited call, deadline
	// rejection, default deadline, injected fault, and bulkhead partition
	// or rate-limit key eviction or overflow. The default, the zero
	// Observer, observes nothing.
	Observer Observer
	// Deadline configures deadline enforcement and the default deadline.
	// The zero value rejects only calls whose deadline has passed.
	Deadline DeadlineConfig
	// RateLimit configures the rate limit: quotas of calls per second per
	// caller key. The zero value limits nothing.
	RateLimit RateLimitConfig
	// Bulkhead configures the bulkhead. The zero value has none.
	Bulkhead BulkheadConfig
	// Chaos configures fault injection. The zero value injects nothing.
	Chaos ChaosConfig
	// KeyHashKey is the secret under which caller keys are hashed for
	// display (see "Caller keys" in the package documentation): give the
	// processes of a fleet the same one so that their events, metrics and
	// consoles show a caller under the same name. The default, nil, is a
	// random key of the process's own, the same for every Server of the
	// process. When set, it must be at least [MinKeyHashKeyLength] bytes.
	// New copies it.
	KeyHashKey []byte
}

// Validate reports every bad field at once, each as a
// *[resilience.FieldError] whose Field is the path from Config, such as
// "Exempt[2]", "Bulkhead.Limit" or
// "Chaos.Faults.Methods[/pkg.Svc/M].ErrorRate", joined with
// [errors.Join]. The zero value is valid.
func (c Config) Validate() error {
	var p problems
	for i, m := range c.Exempt {
		if _, ok := methodPattern(m); !ok {
			p.add("Exempt["+strconv.Itoa(i)+"]", m, patternReason)
		}
	}
	p.nest("Deadline", c.Deadline.Validate())
	p.nest("RateLimit", c.RateLimit.Validate())
	p.nest("Bulkhead", c.Bulkhead.Validate())
	p.nest("Chaos", c.Chaos.Validate())
	if n := len(c.KeyHashKey); n > 0 && n < MinKeyHashKeyLength {
		// The value is the key's length: the key itself is a secret.
		p.add("KeyHashKey", strconv.Itoa(n)+" bytes", "must be at least "+strconv.Itoa(MinKeyHashKeyLength)+" bytes, or empty for a random key per process")
	}
	return p.err()
}

// Server is the server-side resilience pipeline: one unary and one stream
// interceptor that apply, outermost first, exemption, deadline
// enforcement, the default deadline, the rate limit, the bulkhead, fault
// injection and then the handler (see the package documentation for why in this order).
//
// A Server is safe for concurrent use. Create it with [New]; the zero
// value is not usable.
type Server struct {
	exempt     *exemptions
	exemptList []string // Config.Exempt, for snapshots
	deadline   *deadline
	rate       *RateLimit
	bulkhead   *Bulkhead
	chaos      *Chaos
	hub        *hub
	subs       []subscription // guarded by hub.mu
}

// New returns the server pipeline configured by cfg, or the error of
// [Config.Validate] when cfg is invalid.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &hub{cfg: cfg.Observer.OnEvent}
	obs := Observer{OnEvent: h.emit}
	hasher := keyhash.New(cfg.KeyHashKey)
	rate := newRateLimit(cfg.RateLimit, obs)
	rate.keys = newKeyDisplay(hasher, cfg.RateLimit.PartitionBy, cfg.RateLimit.ShowKeys)
	return &Server{
		exempt:     newExemptions(cfg.Exempt),
		exemptList: slices.Clone(cfg.Exempt),
		deadline:   newDeadline(cfg.Deadline, obs),
		rate:       rate,
		bulkhead:   newBulkhead(cfg.Bulkhead, h, newKeyDisplay(hasher, cfg.Bulkhead.PartitionBy, cfg.Bulkhead.ShowKeys)),
		chaos:      newChaos(cfg.Chaos, obs),
		hub:        h,
	}, nil
}

// Chaos returns the server's fault injector, whose [Chaos.Set] changes
// the schedule at run time.
func (s *Server) Chaos() *Chaos { return s.chaos }

// RateLimit returns the server's rate limit, whose [RateLimit.Metrics]
// counts the calls it admitted and limited (zero when it is disabled). It
// is never nil.
func (s *Server) RateLimit() *RateLimit { return s.rate }

// Bulkhead returns the server's bulkhead; its [Bulkhead.Partitions] is
// nil when the bulkhead is disabled.
func (s *Server) Bulkhead() *Bulkhead { return s.bulkhead }

// UnaryServerInterceptor returns the server pipeline as one unary interceptor,
// for grpc.ChainUnaryInterceptor. A call rejected by a stage never reaches
// the later stages or the handler.
func (s *Server) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if s.exempt.match(info.FullMethod) {
			return handler(ctx, req)
		}
		ctx, cancel, err := s.deadline.admit(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		if cancel != nil {
			defer cancel()
		}
		if s.rate.on {
			if trailer, err := s.rate.admit(ctx, info.FullMethod); err != nil {
				if trailer != nil {
					_ = grpc.SetTrailer(ctx, trailer)
				}
				return nil, err
			}
		}
		if s.bulkhead.parts == nil {
			return s.chaos.unary(ctx, req, info, handler)
		}
		return s.bulkhead.unary(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return s.chaos.unary(ctx, req, info, handler)
		})
	}
}

// StreamServerInterceptor returns the server pipeline as one stream interceptor,
// for grpc.ChainStreamInterceptor. A stream rejected by a stage never
// reaches the later stages or the handler.
func (s *Server) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if s.exempt.match(info.FullMethod) {
			return handler(srv, ss)
		}
		ctx, cancel, err := s.deadline.admit(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		if cancel != nil {
			defer cancel()
			ss = &contextStream{ServerStream: ss, ctx: ctx}
		}
		if s.rate.on {
			if trailer, err := s.rate.admit(ctx, info.FullMethod); err != nil {
				if trailer != nil {
					ss.SetTrailer(trailer)
				}
				return err
			}
		}
		if s.bulkhead.parts == nil {
			return s.chaos.stream(srv, ss, info, handler)
		}
		return s.bulkhead.stream(srv, ss, info, func(srv any, ss grpc.ServerStream) error {
			return s.chaos.stream(srv, ss, info, handler)
		})
	}
}
