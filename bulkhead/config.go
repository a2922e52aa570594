package bulkhead

import "time"

// Config configures a [Bulkhead] built by [NewFromConfig]: plain data,
// copied by the constructor, so changing it afterwards changes nothing.
// Every zero field selects its default; note that the zero Limit admits
// nothing, so a useful Config states at least Limit (or a Strategy).
//
// [Config.Validate] reports the values [NewFromConfig] would have to clamp.
type Config struct {
	// Limit is the most executions that run at once. Zero admits nothing:
	// every call is rejected. Negative values are invalid (and count as 0).
	// With a Strategy, Limit is handed to its Init, and the bulkhead starts
	// with the limit Init returns (at least 1).
	Limit int

	// Queue is how many callers may wait for a slot when every slot is
	// taken; they get slots in FIFO order. Zero means no queue: a call that
	// finds every slot taken is rejected at once with
	// [resilience.ErrBulkheadFull]. Negative values are invalid (and count
	// as 0).
	Queue int

	// MaxWait bounds how long a queued caller waits for a slot: after
	// MaxWait it is rejected with [resilience.ErrBulkheadFull] and reported
	// as [RejectedMaxWait]. Zero means no bound but the caller's ctx. It
	// matters only with a Queue. Negative values are invalid (and count as
	// 0).
	MaxWait time.Duration

	// Strategy makes the limit adaptive: every released [Permit] feeds it a
	// [Sample] and the bulkhead takes the limit it returns (at least 1). The
	// Strategy belongs to this bulkhead alone: the bulkhead serialises its
	// calls, so it needs no locking of its own, but two bulkheads must not
	// share one. nil keeps the limit fixed.
	Strategy Strategy

	// Classify turns the error of the function [Bulkhead.Execute] ran into
	// the [Outcome] reported to the Strategy. nil means [OutcomeOf]. It must
	// be safe for concurrent use.
	Classify func(err error) Outcome

	// The event hooks below are optional: a nil hook costs one comparison.
	// Each runs synchronously on the goroutine that caused the event, after
	// the bulkhead's lock is released, so it may call the bulkhead. Hooks
	// must be safe for concurrent use and quick: the goroutine that caused
	// the event waits for them.

	// OnReject is called for every rejected call, on the goroutine of that
	// call, before Acquire, TryAcquire or Execute returns.
	OnReject func(r Rejection)

	// OnLimitChange is called whenever the Strategy changes the limit, on
	// the goroutine whose release caused the change. When changes race,
	// calls may arrive out of order; [Bulkhead.Metrics] has the current
	// limit.
	OnLimitChange func(oldLimit, newLimit int)
}

// Validate reports every field of c that [NewFromConfig] would have to
// clamp, each as a *[resilience.FieldError] whose Field is the field's name
// ("Limit", "Queue", "MaxWait"), joined with [errors.Join]; nil when c is
// valid. Zero fields are valid. The Strategy's own settings are checked by
// [AIMDConfig.Validate], [GradientConfig.Validate] and
// [CPUConfig.Validate].
func (c Config) Validate() error {
	var p problems
	p.check(c.Limit >= 0, "Limit", c.Limit, "must not be negative (0 admits nothing)")
	p.check(c.Queue >= 0, "Queue", c.Queue, "must not be negative (0 means no queue)")
	p.check(c.MaxWait >= 0, "MaxWait", c.MaxWait, "must not be negative (0 means no bound)")
	return p.err()
}

// NewFromConfig returns a bulkhead configured by cfg. It never fails: a
// negative Limit, Queue or MaxWait counts as 0; [Config.Validate] reports
// such values.
func NewFromConfig(cfg Config) *Bulkhead {
	return newWithClock(cfg, time.Now)
}

// New returns a bulkhead that admits at most limit executions at once and
// rejects the next one at once: the shorthand for
// NewFromConfig(Config{Limit: limit}). A limit below 0 counts as 0, which
// admits nothing.
func New(limit int) *Bulkhead {
	return NewFromConfig(Config{Limit: limit})
}

// newWithClock is NewFromConfig with the clock that timestamps admissions
// and releases for the strategy; tests drive adaptive limits with simulated
// time through it.
func newWithClock(cfg Config, now func() time.Time) *Bulkhead {
	b := &Bulkhead{
		maxQueue: max(cfg.Queue, 0),
		maxWait:  max(cfg.MaxWait, 0),
		strategy: cfg.Strategy,
		classify: cfg.Classify,
		onReject: cfg.OnReject,
		onLimit:  cfg.OnLimitChange,
		now:      now,
	}
	if b.classify == nil {
		b.classify = OutcomeOf
	}
	limit := max(cfg.Limit, 0)
	if b.strategy != nil {
		limit = max(b.strategy.Init(limit), 1)
	}
	b.limit.Store(int64(limit))
	return b
}
