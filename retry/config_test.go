package retry

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // fields reported, in order
	}{
		{"zero config is valid", Config{}, nil},
		{"everything set is valid", Config{MaxAttempts: math.MaxInt, Backoff: Constant(0), Jitter: FullJitter,
			MaxDuration: time.Hour, Budget: NewTokenBucket(10, 1)}, nil},
		{"negative max attempts", Config{MaxAttempts: -1}, []string{"MaxAttempts"}},
		{"negative max duration", Config{MaxDuration: -time.Nanosecond}, []string{"MaxDuration"}},
		{"every problem at once", Config{MaxAttempts: math.MinInt, MaxDuration: -time.Hour}, []string{"MaxAttempts", "MaxDuration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			fes := resilience.FieldErrors(err)
			if (err == nil) != (len(tt.want) == 0) || len(fes) != len(tt.want) {
				t.Fatalf("Validate = %v (%d field errors), want fields %v", err, len(fes), tt.want)
			}
			for i, fe := range fes {
				if fe.Field != tt.want[i] || fe.Reason == "" {
					t.Errorf("problem %d: %+v, want field %s with a reason", i, fe, tt.want[i])
				}
			}
			if len(tt.want) > 0 {
				if _, ok := errors.AsType[*resilience.FieldError](err); !ok {
					t.Error("errors.As finds no *resilience.FieldError")
				}
			}
		})
	}
}

// TestNewFromConfigClamps checks that the values Validate reports are
// clamped as documented, and that the zero Config runs the function once.
func TestNewFromConfigClamps(t *testing.T) {
	for _, cfg := range []Config{{}, {MaxAttempts: -3}, {MaxAttempts: 1, MaxDuration: -time.Second}} {
		p := NewFromConfig(cfg)
		p.clock = newFakeClock()
		fn, calls := always(errTransient)
		err := p.Do(context.Background(), fn)
		var ex *resilience.RetriesExhaustedError
		if !errors.As(err, &ex) || ex.Attempts != 1 || *calls != 1 {
			t.Errorf("%+v: Do = %v after %d calls, want RetriesExhaustedError after 1", cfg, err, *calls)
		}
	}
	p := NewFromConfig(Config{MaxAttempts: 3, MaxDuration: -time.Second})
	if p.cfg.MaxDuration != 0 || p.cfg.Backoff != defaultBackoff || p.MaxAttempts() != 3 {
		t.Errorf("normalized config %+v, want no max duration and the default backoff", p.cfg)
	}
}

// TestNewBuildsConfig checks that New(n, opts...) is NewFromConfig of the
// Config the options describe: each option sets its one field, and the
// policies behave the same.
func TestNewBuildsConfig(t *testing.T) {
	budget := NewTokenBucket(10, 1)
	retryIf := func(error) bool { return true }
	abortIf := func(error) bool { return false }
	jitter := ProportionalJitter(0.1)
	backoff := Constant(time.Second)
	opts := map[string]struct {
		opt   Option
		check func(Config) bool
	}{
		"WithMaxAttempts": {WithMaxAttempts(7), func(c Config) bool { return c.MaxAttempts == 7 }},
		"WithBackoff":     {WithBackoff(backoff), func(c Config) bool { return c.Backoff == backoff }},
		"WithJitter":      {WithJitter(jitter), func(c Config) bool { return c.Jitter != nil }},
		"WithRetryIf":     {WithRetryIf(retryIf), func(c Config) bool { return c.RetryIf != nil }},
		"WithAbortIf":     {WithAbortIf(abortIf), func(c Config) bool { return c.AbortIf != nil }},
		"WithMaxDuration": {WithMaxDuration(time.Minute), func(c Config) bool { return c.MaxDuration == time.Minute }},
		"WithBudget":      {WithBudget(budget), func(c Config) bool { return c.Budget == Budget(budget) }},
	}
	for name, o := range opts {
		var c Config
		o.opt.apply(&c)
		if !o.check(c) {
			t.Errorf("%s did not set its field: %+v", name, c)
		}
		// Nothing else: clearing the field gives the zero Config back.
		switch name {
		case "WithMaxAttempts":
			c.MaxAttempts = 0
		case "WithBackoff":
			c.Backoff = nil
		case "WithJitter":
			c.Jitter = nil
		case "WithRetryIf":
			c.RetryIf = nil
		case "WithAbortIf":
			c.AbortIf = nil
		case "WithMaxDuration":
			c.MaxDuration = 0
		case "WithBudget":
			c.Budget = nil
		}
		if c.MaxAttempts != 0 || c.Backoff != nil || c.Jitter != nil || c.RetryIf != nil || c.AbortIf != nil ||
			c.MaxDuration != 0 || c.Budget != nil || c.OnRetry != nil || c.OnExhausted != nil ||
			c.OnBudgetDenied != nil || c.OnDeadline != nil {
			t.Errorf("%s set more than its field: %+v", name, c)
		}
	}

	// Same settings both ways: same waits and attempts.
	run := func(p *Policy) ([]time.Duration, int) {
		fc := newFakeClock()
		p.clock, p.random = fc, func() float64 { return 0.25 }
		fn, calls := always(errTransient)
		_ = p.Do(context.Background(), fn)
		return fc.slept(), *calls
	}
	byNew, nNew := run(New(4, WithBackoff(Linear(time.Second, time.Second, 0)), WithJitter(EqualJitter)))
	byCfg, nCfg := run(NewFromConfig(Config{MaxAttempts: 4, Backoff: Linear(time.Second, time.Second, 0), Jitter: EqualJitter}))
	if nNew != 4 || nNew != nCfg || !equalDurations(byNew, byCfg) {
		t.Errorf("New: %d calls, sleeps %v; NewFromConfig: %d calls, sleeps %v; want 4 calls and the same sleeps", nNew, byNew, nCfg, byCfg)
	}
}

// TestConfigCopied checks that a policy keeps the Config it was built
// with: changing the struct afterwards changes nothing.
func TestConfigCopied(t *testing.T) {
	cfg := Config{MaxAttempts: 2, Backoff: Constant(0)}
	p := NewFromConfig(cfg)
	cfg.MaxAttempts = 9
	cfg.OnRetry = func(context.Context, int, error, time.Duration) { t.Error("a hook set after NewFromConfig was called") }
	fn, calls := always(errTransient)
	_ = p.Do(context.Background(), fn)
	if *calls != 2 {
		t.Errorf("%d calls, want the 2 of the Config at construction", *calls)
	}
}

// TestWithKeepsHooks checks that With changes only the fields its options
// set: the copy keeps the original's hooks.
func TestWithKeepsHooks(t *testing.T) {
	var ev events
	cfg := Config{MaxAttempts: 5, Backoff: Constant(0)}
	ev.set(&cfg)
	q := NewFromConfig(cfg).With(WithMaxAttempts(2))
	fn, _ := always(errTransient)
	_ = q.Do(context.Background(), fn)
	if len(ev.retries) != 1 || ev.exhausted != 1 {
		t.Errorf("copy made with With: %d retries, %d exhausted events; want 1 and 1", len(ev.retries), ev.exhausted)
	}
}
