package retry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"testing/synctest"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

func TestDoSucceedsAtFirstAttempt(t *testing.T) {
	var ev events
	p, fc := testPolicy(3, 0.5, ev.hooks())
	fn, calls := failing()
	if err := p.Do(context.Background(), fn); err != nil {
		t.Fatalf("Do = %v, want nil", err)
	}
	if *calls != 1 || len(fc.slept()) != 0 || len(ev.retries) != 0 {
		t.Errorf("calls %d, sleeps %v, retry events %d; want 1 call, no sleep, no event", *calls, fc.slept(), len(ev.retries))
	}
}

func TestDoRetriesWithDefaultBackoffUntilSuccess(t *testing.T) {
	var ev events
	p, fc := testPolicy(5, 0.5, ev.hooks())
	fn, calls := failing(errTransient, errTransient)
	if err := p.Do(context.Background(), fn); err != nil {
		t.Fatalf("Do = %v, want nil", err)
	}
	if *calls != 3 {
		t.Errorf("calls = %d, want 3", *calls)
	}
	if want := ms(100, 200); !equalDurations(fc.slept(), want) {
		t.Errorf("sleeps = %v, want %v (the default Exponential(100ms, 10s, 2))", fc.slept(), want)
	}
	want := []retryEvent{{1, errTransient, 100 * time.Millisecond}, {2, errTransient, 200 * time.Millisecond}}
	if len(ev.retries) != len(want) || ev.retries[0] != want[0] || ev.retries[1] != want[1] {
		t.Errorf("OnRetry events = %v, want %v", ev.retries, want)
	}
}

func TestDoExhausted(t *testing.T) {
	tests := []struct {
		maxAttempts  int
		wantAttempts int
		wantSleeps   []time.Duration
	}{
		{3, 3, ms(100, 200)},
		{1, 1, nil},
		{0, 1, nil},
		{-5, 1, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.maxAttempts), func(t *testing.T) {
			var ev events
			p, fc := testPolicy(tt.maxAttempts, 0.5, ev.hooks())
			fn, calls := always(errTransient)
			err := p.Do(context.Background(), fn)
			var ex *resilience.RetriesExhaustedError
			if !errors.As(err, &ex) || ex.Attempts != tt.wantAttempts || ex.Err != errTransient {
				t.Fatalf("Do = %#v, want *RetriesExhaustedError{%d, errTransient}", err, tt.wantAttempts)
			}
			if !errors.Is(err, errTransient) {
				t.Error("the error does not unwrap to the last attempt's error")
			}
			if *calls != tt.wantAttempts || !equalDurations(fc.slept(), tt.wantSleeps) || ev.exhausted != 1 {
				t.Errorf("calls %d, sleeps %v, OnExhausted %d; want %d, %v, 1", *calls, fc.slept(), ev.exhausted, tt.wantAttempts, tt.wantSleeps)
			}
		})
	}
}

func TestDoConditions(t *testing.T) {
	isTransient := func(err error) bool { return errors.Is(err, errTransient) }
	isBad := func(err error) bool { return errors.Is(err, errBad) }
	wrappedPermanent := fmt.Errorf("op: %w", Permanent(errBad))
	veto := &pushbackError{retry: false}
	timeout := &resilience.TimeoutError{After: time.Second}
	serverDelay := &pushbackError{delay: time.Second, retry: true}

	tests := []struct {
		name      string
		opts      []Option
		errs      []error // errors of the attempts, then success
		cancel    bool    // the first attempt cancels the caller's context
		wantCalls int
		wantErr   error // compared with ==; nil means success
	}{
		{name: "permanent stops and is unmarked", errs: []error{Permanent(errBad)}, wantCalls: 1, wantErr: errBad},
		{name: "wrapped permanent stops as is", errs: []error{wrappedPermanent}, wantCalls: 1, wantErr: wrappedPermanent},
		{name: "abort-if stops", opts: []Option{WithAbortIf(isBad)}, errs: []error{errTransient, errBad}, wantCalls: 2, wantErr: errBad},
		{name: "abort-if false retries", opts: []Option{WithAbortIf(isBad)}, errs: []error{errTransient, errTransient}, wantCalls: 3},
		{name: "retry-if false stops", opts: []Option{WithRetryIf(isTransient)}, errs: []error{errBad}, wantCalls: 1, wantErr: errBad},
		{name: "retry-if true retries", opts: []Option{WithRetryIf(isTransient)}, errs: []error{errTransient, errTransient}, wantCalls: 3},
		{name: "abort-if takes precedence", opts: []Option{WithRetryIf(isBad), WithAbortIf(isBad)}, errs: []error{errBad}, wantCalls: 1, wantErr: errBad},
		{name: "nil retry-if retries everything", opts: []Option{WithRetryIf(nil)}, errs: []error{errBad}, wantCalls: 2},
		{name: "caller cancelled: context error as is", errs: []error{context.Canceled}, cancel: true, wantCalls: 1, wantErr: context.Canceled},
		{name: "caller cancelled: any error as is", errs: []error{errTransient}, cancel: true, wantCalls: 1, wantErr: errTransient},
		{name: "per-attempt timeout retried while caller alive", errs: []error{timeout, timeout}, wantCalls: 3},
		{name: "context error retried while caller alive", errs: []error{context.Canceled, context.DeadlineExceeded}, wantCalls: 3},
		{name: "pushback veto stops as is", errs: []error{veto}, wantCalls: 1, wantErr: veto},
		{name: "pushback cannot make an error retryable", opts: []Option{WithRetryIf(isTransient)}, errs: []error{serverDelay}, wantCalls: 1, wantErr: serverDelay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := testPolicy(3, 0.5, tt.opts...)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			calls := 0
			err := p.Do(ctx, func(context.Context) error {
				calls++
				if tt.cancel {
					cancel()
				}
				if calls <= len(tt.errs) {
					return tt.errs[calls-1]
				}
				return nil
			})
			if calls != tt.wantCalls {
				t.Errorf("calls = %d, want %d", calls, tt.wantCalls)
			}
			if err != tt.wantErr {
				t.Errorf("Do = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestDoContextDoneBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p, _ := testPolicy(3, 0.5)
	fn, calls := always(errTransient)
	if err := p.Do(ctx, fn); err != context.Canceled || *calls != 0 {
		t.Errorf("Do = %v after %d calls, want context.Canceled without calling fn", err, *calls)
	}
	v, err := DoValue(ctx, p, func(context.Context) (int, error) { return 1, nil })
	if err != context.Canceled || v != 0 {
		t.Errorf("DoValue = %v, %v, want 0, context.Canceled", v, err)
	}
}

func TestDoPushbackDelay(t *testing.T) {
	tests := []struct {
		name       string
		errs       []error
		wantSleeps []time.Duration
	}{
		{"server delay replaces backoff and jitter", []error{&pushbackError{3 * time.Second, true}}, ms(3000)},
		{"negative delay is zero", []error{&pushbackError{-time.Second, true}}, ms(0)},
		{"found when wrapped", []error{fmt.Errorf("rpc: %w", &pushbackError{time.Second, true})}, ms(1000)},
		{"backoff restarts after pushback", []error{errTransient, errTransient, &pushbackError{5 * time.Second, true}, errTransient, errTransient},
			ms(100, 200, 5000, 100, 200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Random 0.99 makes EqualJitter visible: 100ms → ~99.5ms.
			p, fc := testPolicy(10, 0.99)
			if tt.name == "server delay replaces backoff and jitter" {
				p = p.With(WithJitter(EqualJitter))
			}
			fn, calls := failing(tt.errs...)
			if err := p.Do(context.Background(), fn); err != nil {
				t.Fatalf("Do = %v, want nil", err)
			}
			if *calls != len(tt.errs)+1 || !equalDurations(fc.slept(), tt.wantSleeps) {
				t.Errorf("calls %d, sleeps %v; want %d, %v", *calls, fc.slept(), len(tt.errs)+1, tt.wantSleeps)
			}
		})
	}
}

func TestDoJitterApplied(t *testing.T) {
	p, fc := testPolicy(4, 0.5, WithBackoff(Constant(time.Second)), WithJitter(FullJitter))
	fn, _ := failing(errTransient, errTransient)
	if err := p.Do(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
	if want := ms(500, 500); !equalDurations(fc.slept(), want) {
		t.Errorf("sleeps = %v, want %v", fc.slept(), want)
	}
}

func TestDoAttemptReportsNumberAndDelay(t *testing.T) {
	p, _ := testPolicy(5, 0.5, WithBackoff(Linear(10*time.Millisecond, 10*time.Millisecond, 0)))
	var got []Attempt
	err := p.DoAttempt(context.Background(), func(_ context.Context, a Attempt) error {
		got = append(got, a)
		if a.Num < 4 {
			return errTransient
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Attempt{{1, 0}, {2, 10 * time.Millisecond}, {3, 20 * time.Millisecond}, {4, 30 * time.Millisecond}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("attempts = %v, want %v", got, want)
	}
}

func TestDoValue(t *testing.T) {
	p, _ := testPolicy(3, 0.5)
	n := 0
	v, err := DoValue(context.Background(), p, func(context.Context) (string, error) {
		n++
		if n < 2 {
			return "partial", errTransient
		}
		return "done", nil
	})
	if v != "done" || err != nil || n != 2 {
		t.Errorf("DoValue = %q, %v after %d calls; want \"done\", nil after 2", v, err, n)
	}

	v, err = DoValue(context.Background(), p, func(context.Context) (string, error) { return "last", errTransient })
	var ex *resilience.RetriesExhaustedError
	if v != "last" || !errors.As(err, &ex) || ex.Attempts != 3 {
		t.Errorf("DoValue = %q, %v; want the last value and RetriesExhaustedError after 3", v, err)
	}
}

// TestDoDeadline checks that Do never sleeps past the context's deadline:
// when the next wait would end at or after it, Do returns the last error at
// once. Time is synctest's fake clock.
func TestDoDeadline(t *testing.T) {
	tests := []struct {
		name        string
		deadline    time.Duration
		wantCalls   int
		wantElapsed time.Duration
	}{
		// Waits of 400ms: attempts at 0, 400ms, 800ms; the wait after the
		// third would end at 1.2s.
		{"wait would end past the deadline", time.Second, 3, 800 * time.Millisecond},
		{"wait would end exactly at the deadline", 1200 * time.Millisecond, 3, 800 * time.Millisecond},
		{"wait ends just before the deadline", 1200*time.Millisecond + 1, 4, 1200 * time.Millisecond},
		{"no time for any retry", 400 * time.Millisecond, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var ev events
				p := New(10, WithBackoff(Constant(400*time.Millisecond)), ev.hooks())
				ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
				defer cancel()
				start := time.Now()
				fn, calls := always(errTransient)
				err := p.Do(ctx, fn)
				if err != errTransient {
					t.Errorf("Do = %v, want the last error as is", err)
				}
				if *calls != tt.wantCalls || time.Since(start) != tt.wantElapsed {
					t.Errorf("calls %d after %v, want %d after %v", *calls, time.Since(start), tt.wantCalls, tt.wantElapsed)
				}
				if ev.deadline != 1 || ev.deadlineAttempt != tt.wantCalls || ev.deadlineDelay != 400*time.Millisecond {
					t.Errorf("OnDeadline called %d times (attempt %d, delay %v), want once for attempt %d, 400ms",
						ev.deadline, ev.deadlineAttempt, ev.deadlineDelay, tt.wantCalls)
				}
			})
		})
	}
}

func TestDoMaxDuration(t *testing.T) {
	var ev events
	p, fc := testPolicy(10, 0.5, WithBackoff(Constant(300*time.Millisecond)), WithMaxDuration(time.Second), ev.hooks())
	start := fc.now()
	calls := 0
	err := p.Do(context.Background(), func(context.Context) error {
		calls++
		fc.advance(100 * time.Millisecond) // each attempt takes 100ms
		return errTransient
	})
	// Attempts run 0-100ms, 400-500ms, 800-900ms; the next wait would end
	// at 1.2s, past the 1s limit.
	if err != errTransient || calls != 3 {
		t.Errorf("Do = %v after %d calls, want errTransient after 3", err, calls)
	}
	if elapsed := fc.now().Sub(start); elapsed != 900*time.Millisecond || ev.deadline != 1 {
		t.Errorf("returned after %v with %d OnDeadline events, want 900ms and 1", elapsed, ev.deadline)
	}
}

func TestFitsArithmetic(t *testing.T) {
	fc := newFakeClock()
	tests := []struct {
		name                 string
		maxDuration, elapsed time.Duration
		delay                time.Duration
		want                 bool
	}{
		{"no limit", 0, time.Hour, maxDelay, true},
		{"fits", time.Second, 500 * time.Millisecond, 499 * time.Millisecond, true},
		{"ends exactly at the limit", time.Second, 500 * time.Millisecond, 500 * time.Millisecond, false},
		{"huge delay does not overflow", time.Second, 0, maxDelay, false},
		{"elapsed beyond the limit", time.Second, 2 * time.Second, 0, false},
		{"huge limit", maxDelay, time.Hour, time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(2, WithMaxDuration(tt.maxDuration))
			p.clock = fc
			c := p.Start()
			c.start = fc.now().Add(-tt.elapsed)
			if got := c.fits(context.Background(), tt.delay, time.Time{}, false); got != tt.want {
				t.Errorf("fits = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestDoCancelDuringWait checks that cancelling the caller's context during
// a wait returns ctx.Err() at once: synctest's fake clock does not move.
func TestDoCancelDuringWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(3, WithBackoff(Constant(time.Hour)))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		fn, calls := always(errTransient)
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- p.Do(ctx, fn) }()
		synctest.Wait() // Do is now durably blocked in its one-hour wait
		select {
		case err := <-done:
			t.Fatalf("Do returned %v before the wait", err)
		default:
		}
		cancel()
		synctest.Wait()
		select {
		case err := <-done:
			if err != context.Canceled {
				t.Errorf("Do = %v, want context.Canceled", err)
			}
		default:
			t.Fatal("Do still waits after its context was cancelled")
		}
		if elapsed := time.Since(start); elapsed != 0 || *calls != 1 {
			t.Errorf("returned after %v and %d calls, want at once after 1", elapsed, *calls)
		}
	})
}

func TestCallWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(2).Start()
		start := time.Now()
		if err := c.Wait(context.Background(), 3*time.Second); err != nil || time.Since(start) != 3*time.Second {
			t.Errorf("Wait = %v after %v, want nil after 3s", err, time.Since(start))
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := c.Wait(ctx, 0); err != context.Canceled {
			t.Errorf("Wait(cancelled, 0) = %v, want context.Canceled", err)
		}
		if err := c.Wait(context.Background(), -time.Second); err != nil {
			t.Errorf("Wait(-1s) = %v, want nil", err)
		}
	})
}

// TestCallStepwise drives a call by hand, as a stream interceptor does.
func TestCallStepwise(t *testing.T) {
	p, _ := testPolicy(3, 0.5, WithBackoff(Constant(time.Second)))
	ctx := context.Background()
	c := p.Start()
	if a := c.Attempt(); a != (Attempt{1, 0}) {
		t.Fatalf("first Attempt = %v, want {1 0}", a)
	}
	if d := c.Next(ctx, errTransient); d != (Decision{Retry: true, Delay: time.Second}) {
		t.Fatalf("Next after a failure = %+v, want a retry after 1s", d)
	}
	if a := c.Attempt(); a != (Attempt{2, time.Second}) {
		t.Fatalf("second Attempt = %v, want {2 1s}", a)
	}
	if d := c.Next(ctx, nil); d != (Decision{}) {
		t.Fatalf("Next after success = %+v, want the zero Decision", d)
	}
}

func TestZeroPolicyRunsOnce(t *testing.T) {
	var p Policy
	fn, calls := always(errTransient)
	err := p.Do(context.Background(), fn)
	var ex *resilience.RetriesExhaustedError
	if !errors.As(err, &ex) || ex.Attempts != 1 || *calls != 1 || p.MaxAttempts() != 1 {
		t.Errorf("Do = %v after %d calls, want RetriesExhaustedError after 1", err, *calls)
	}
	// With more attempts, the zero Policy uses the default backoff.
	synctest.Test(t, func(t *testing.T) {
		q := p.With(WithMaxAttempts(3))
		fn, _ := always(errTransient)
		start := time.Now()
		_ = q.Do(context.Background(), fn)
		if elapsed := time.Since(start); elapsed != 300*time.Millisecond {
			t.Errorf("waited %v, want 300ms (100ms + 200ms)", elapsed)
		}
	})
}

func TestWithCopies(t *testing.T) {
	b := NewTokenBucket(10, 0.1)
	p := New(5, WithBudget(b))
	q := p.With(WithMaxAttempts(1), WithBackoff(nil))
	if p.MaxAttempts() != 5 || q.MaxAttempts() != 1 {
		t.Errorf("MaxAttempts: original %d, copy %d; want 5 and 1", p.MaxAttempts(), q.MaxAttempts())
	}
	if q.cfg.Budget != Budget(b) || q.cfg.Backoff != defaultBackoff {
		t.Error("the copy does not share the budget or WithBackoff(nil) did not restore the default")
	}
	if New(math.MaxInt).MaxAttempts() != math.MaxInt {
		t.Error("New(MaxInt) does not keep its limit")
	}
}

func TestPermanent(t *testing.T) {
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	err := fmt.Errorf("wrapped: %w", Permanent(errBad))
	if !IsPermanent(err) || !errors.Is(err, errBad) || err.Error() != "wrapped: bad request" {
		t.Errorf("IsPermanent %v, Is %v, message %q", IsPermanent(err), errors.Is(err, errBad), err)
	}
	if IsPermanent(errBad) {
		t.Error("IsPermanent(plain error) = true")
	}
}

// TestHooksGetCallContext checks that every event carries the call's context.
func TestHooksGetCallContext(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "call-1")
	seen := 0
	check := func(ctx context.Context) {
		if ctx.Value(key{}) != "call-1" {
			t.Error("a hook did not get the call's context")
		}
		seen++
	}
	p := NewFromConfig(Config{
		MaxAttempts: 2,
		Backoff:     Constant(0),
		OnRetry:     func(ctx context.Context, _ int, _ error, _ time.Duration) { check(ctx) },
		OnExhausted: func(ctx context.Context, _ int, _ error) { check(ctx) },
	})
	fn, _ := always(errTransient)
	_ = p.Do(ctx, fn)
	if seen != 2 {
		t.Errorf("hooks called %d times, want 2 (retry, exhausted)", seen)
	}
}
