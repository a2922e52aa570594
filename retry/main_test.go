package retry

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	errTransient = errors.New("transient")
	errBad       = errors.New("bad request")
)

// fakeClock is a clock whose time moves only when the policy sleeps or a
// test advances it; it records every sleep.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.t = c.t.Add(d)
	return nil
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// testPolicy builds a policy on a fake clock whose random numbers are all r.
func testPolicy(maxAttempts int, r float64, opts ...Option) (*Policy, *fakeClock) {
	p := New(maxAttempts, opts...)
	fc := newFakeClock()
	p.clock = fc
	p.random = func() float64 { return r }
	return p, fc
}

// failing returns a function that returns errs[i] on its i-th call and nil
// once they are used up, and a pointer to the number of calls.
func failing(errs ...error) (func(context.Context) error, *int) {
	calls := 0
	return func(context.Context) error {
		calls++
		if calls <= len(errs) {
			return errs[calls-1]
		}
		return nil
	}, &calls
}

// always returns a function that always fails with err, and a call counter.
func always(err error) (func(context.Context) error, *int) {
	calls := 0
	return func(context.Context) error {
		calls++
		return err
	}, &calls
}

// pushbackError is an error carrying a server's retry verdict.
type pushbackError struct {
	delay time.Duration
	retry bool
}

func (e *pushbackError) Error() string                     { return "pushback" }
func (e *pushbackError) RetryDelay() (time.Duration, bool) { return e.delay, e.retry }

// events records the calls of a policy's event hooks.
type events struct {
	mu                          sync.Mutex
	retries                     []retryEvent
	exhausted, denied, deadline int
	deadlineAttempt             int
	deadlineDelay               time.Duration
}

type retryEvent struct {
	attempt int
	err     error
	delay   time.Duration
}

// hooks returns an Option that sets every event hook of the Config to
// record into e.
func (e *events) hooks() Option {
	return optionFunc(func(c *Config) { e.set(c) })
}

// set sets every event hook of c to record into e.
func (e *events) set(c *Config) {
	c.OnRetry = func(_ context.Context, attempt int, err error, delay time.Duration) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.retries = append(e.retries, retryEvent{attempt, err, delay})
	}
	c.OnExhausted = func(context.Context, int, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.exhausted++
	}
	c.OnBudgetDenied = func(context.Context, int, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.denied++
	}
	c.OnDeadline = func(_ context.Context, attempt int, _ error, delay time.Duration) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.deadline++
		e.deadlineAttempt, e.deadlineDelay = attempt, delay
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
