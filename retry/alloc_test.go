package retry

import (
	"context"
	"testing"
	"time"
)

// TestSuccessPathAllocatesNothing checks that a successful first attempt
// allocates nothing, whatever the policy's configuration.
func TestSuccessPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocations")
	}
	var ev events
	full := New(5,
		WithBackoff(DecorrelatedJitterV2(time.Second, time.Minute)),
		WithJitter(ProportionalJitter(0.2)),
		WithRetryIf(func(error) bool { return true }),
		WithAbortIf(func(error) bool { return false }),
		WithMaxDuration(time.Minute),
		ev.hooks(),
	)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	cfg := Config{
		MaxAttempts: 5,
		Backoff:     Exponential(time.Millisecond, time.Second, 2),
		Jitter:      FullJitter,
		RetryIf:     func(error) bool { return true },
		AbortIf:     func(error) bool { return false },
		MaxDuration: time.Minute,
		Budget:      NewRatioBudget(10*time.Second, 10, 0.2),
	}
	ev.set(&cfg)
	policies := map[string]*Policy{
		"default":      New(3),
		"zero config":  NewFromConfig(Config{}),
		"full config":  NewFromConfig(cfg),
		"all options":  full,
		"token bucket": full.With(WithBudget(NewTokenBucket(100, 0.1))),
		"ratio budget": full.With(WithBudget(NewRatioBudget(10*time.Second, 10, 0.2))),
	}
	for name, p := range policies {
		t.Run(name, func(t *testing.T) {
			calls := map[string]func(){
				"Do":        func() { _ = p.Do(ctx, noop) },
				"DoAttempt": func() { _ = p.DoAttempt(ctx, func(context.Context, Attempt) error { return nil }) },
				"DoValue":   func() { _, _ = DoValue(ctx, p, func(context.Context) (int, error) { return 1, nil }) },
			}
			for call, f := range calls {
				if n := testing.AllocsPerRun(100, f); n != 0 {
					t.Errorf("%s allocates %v times per successful call, want 0", call, n)
				}
			}
		})
	}

	t.Run("retry with zero wait", func(t *testing.T) {
		p := New(3, WithBackoff(Constant(0)), WithJitter(FullJitter), WithBudget(NewTokenBucket(100, 1)))
		n := 0
		fn := func(context.Context) error {
			n++
			if n%2 == 1 {
				return errTransient
			}
			return nil
		}
		if allocs := testing.AllocsPerRun(100, func() { _ = p.Do(ctx, fn) }); allocs != 0 {
			t.Errorf("a call with one retry allocates %v times, want 0", allocs)
		}
	})
}
