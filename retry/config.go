package retry

import (
	"context"
	"errors"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// Config configures a [Policy] built by [NewFromConfig]: plain data, copied
// by the constructor, so changing it afterwards changes no policy. Every
// zero field selects its default, and the zero Config is a policy that runs
// the function once, as New(1) does.
//
// [Config.Validate] reports the values [NewFromConfig] would have to clamp.
type Config struct {
	// MaxAttempts is the most attempts in all, the first one included: 3
	// calls the function up to three times, 1 never retries. Zero means 1;
	// math.MaxInt means no limit other than time, the budget and the
	// conditions. Negative values are invalid (and count as 1).
	MaxAttempts int

	// Backoff computes the wait before each retry. nil means
	// Exponential(100ms, 10s, 2).
	Backoff Backoff

	// Jitter randomises every backoff delay, for instance [FullJitter] or
	// ProportionalJitter(0.2). nil means [NoJitter]. Delays a [Pushback]
	// chose are never jittered.
	Jitter Jitter

	// RetryIf decides whether an attempt's error is retryable: false stops
	// at once, and Do returns the error as is. nil retries every error. It
	// is consulted after the caller's context, [Permanent] and AbortIf, and
	// never sees nil. It must be safe for concurrent use.
	RetryIf func(err error) bool

	// AbortIf stops retrying at once when it returns true for an attempt's
	// error; Do returns the error as is. It takes precedence over RetryIf.
	// nil aborts on nothing. It must be safe for concurrent use.
	AbortIf func(err error) bool

	// MaxDuration bounds the time a call may spend retrying, measured from
	// the start of the call (Do, or [Policy.Start]): a retry whose wait
	// would end at or after MaxDuration is not made, and Do returns the
	// last error as is. It does not interrupt a running attempt (give ctx a
	// deadline for that). Zero means no limit other than ctx's deadline;
	// negative values are invalid (and mean no limit).
	MaxDuration time.Duration

	// Budget is consulted before every retry and told every attempt's
	// outcome, as the [Budget] contract says. Share one Budget between
	// policies to cap their retries together. nil means no budget.
	Budget Budget

	// The event hooks below are optional: a nil hook costs one comparison.
	// Each runs synchronously on the goroutine that calls Do (or
	// [Call.Next]), at most once per attempt and in the order of the
	// attempts, never while the engine holds a lock, so it may call back
	// into the library. It receives the call's ctx, to find its span or
	// logger. Hooks are called concurrently when the policy is used
	// concurrently, so they must be safe for concurrent use, and quick.
	// Attempt numbers count from 1 (the first attempt). After a failed
	// attempt exactly one of them runs, unless the error is not retried at
	// all (a condition, a Permanent error, a Pushback veto or a done ctx).

	// OnRetry is called when a retry has been decided, before the wait:
	// attempt is the number of the attempt that failed with err, delay the
	// wait before attempt+1 (a Pushback's delay or the jittered backoff).
	OnRetry func(ctx context.Context, attempt int, err error, delay time.Duration)
	// OnExhausted is called when the last allowed attempt failed with a
	// retryable err; Do then returns a *resilience.RetriesExhaustedError.
	OnExhausted func(ctx context.Context, attempts int, err error)
	// OnBudgetDenied is called when the Budget refused the retry that would
	// have followed attempt; Do then returns err as is.
	OnBudgetDenied func(ctx context.Context, attempt int, err error)
	// OnDeadline is called when the retry that would have followed attempt
	// is given up because its wait, delay, would end at or after the
	// context's deadline or MaxDuration; Do then returns err as is.
	OnDeadline func(ctx context.Context, attempt int, err error, delay time.Duration)
}

// Validate reports every field of c that [NewFromConfig] would have to
// clamp, each as a *[resilience.FieldError] whose Field is the field's name
// ("MaxAttempts", "MaxDuration"), joined with [errors.Join]; nil when c is
// valid. Zero fields are valid: they select the defaults.
func (c Config) Validate() error {
	var errs []error
	if c.MaxAttempts < 0 {
		errs = append(errs, &resilience.FieldError{Field: "MaxAttempts", Value: c.MaxAttempts, Reason: "must not be negative (0 means 1)"})
	}
	if c.MaxDuration < 0 {
		errs = append(errs, &resilience.FieldError{Field: "MaxDuration", Value: c.MaxDuration, Reason: "must not be negative (0 means no limit)"})
	}
	return errors.Join(errs...)
}

// normalized returns c with the defaults filled in and out-of-range values
// clamped, as NewFromConfig documents.
func (c Config) normalized() Config {
	c.MaxAttempts = max(c.MaxAttempts, 1)
	if c.Backoff == nil {
		c.Backoff = defaultBackoff
	}
	c.MaxDuration = max(c.MaxDuration, 0)
	return c
}

// NewFromConfig returns a policy configured by cfg. It never fails: a
// MaxAttempts below 1 counts as 1 and a negative MaxDuration means no
// limit; [Config.Validate] reports such values.
func NewFromConfig(cfg Config) *Policy {
	p := &Policy{cfg: cfg.normalized()}
	p.timed, _ = p.cfg.Budget.(TimedBudget)
	return p
}

// New returns a policy that makes at most maxAttempts attempts in all, the
// first one included: New(3) calls the function up to three times, New(1)
// never retries. It is the shorthand for [NewFromConfig] with a [Config]
// whose MaxAttempts is maxAttempts and whose other fields the options set,
// in order: a later option overrides an earlier one of the same kind. A
// maxAttempts below 1 counts as 1; math.MaxInt means no limit other than
// time, the budget and the conditions.
//
// New never fails; it clamps as NewFromConfig does.
func New(maxAttempts int, opts ...Option) *Policy {
	cfg := Config{MaxAttempts: maxAttempts}
	for _, o := range opts {
		o.apply(&cfg)
	}
	return NewFromConfig(cfg)
}

// With returns a copy of p with opts applied on top of p's settings; p is
// unchanged. Use it for per-method or per-call variants, such as
// p.With(retry.WithMaxAttempts(1)) to disable retries. The copy shares p's
// Budget, so both draw on the same balance.
func (p *Policy) With(opts ...Option) *Policy {
	c := *p
	for _, o := range opts {
		o.apply(&c.cfg)
	}
	c.cfg = c.cfg.normalized()
	c.timed, _ = c.cfg.Budget.(TimedBudget)
	return &c
}

// Option sets one field of the [Config] that [New] builds, or that
// [Policy.With] changes; each says nothing a Config cannot say. Options are
// immutable values: one may be reused for any number of policies, from any
// goroutine.
type Option interface {
	apply(*Config)
}

type optionFunc func(*Config)

func (f optionFunc) apply(c *Config) { f(c) }

// WithMaxAttempts sets [Config.MaxAttempts], as the argument of [New] does;
// below 1 counts as 1.
func WithMaxAttempts(n int) Option {
	return optionFunc(func(c *Config) { c.MaxAttempts = n })
}

// WithBackoff sets [Config.Backoff]; nil restores the default,
// Exponential(100ms, 10s, 2).
func WithBackoff(b Backoff) Option {
	return optionFunc(func(c *Config) { c.Backoff = b })
}

// WithJitter sets [Config.Jitter]; nil means [NoJitter], the default.
func WithJitter(j Jitter) Option {
	return optionFunc(func(c *Config) { c.Jitter = j })
}

// WithRetryIf sets [Config.RetryIf]; nil, the default, retries every error.
func WithRetryIf(retryable func(error) bool) Option {
	return optionFunc(func(c *Config) { c.RetryIf = retryable })
}

// WithAbortIf sets [Config.AbortIf]; nil, the default, aborts on nothing.
func WithAbortIf(abort func(error) bool) Option {
	return optionFunc(func(c *Config) { c.AbortIf = abort })
}

// WithMaxDuration sets [Config.MaxDuration]; zero or less, the default,
// means no limit other than ctx's deadline.
func WithMaxDuration(d time.Duration) Option {
	return optionFunc(func(c *Config) { c.MaxDuration = d })
}

// WithBudget sets [Config.Budget]; nil, the default, means no budget.
func WithBudget(b Budget) Option {
	return optionFunc(func(c *Config) { c.Budget = b })
}
