package ratelimit

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// The Wait tests run in a synctest bubble: the limiter's clock and the
// timer it waits on use the bubble's fake time, which moves only when
// every goroutine of the bubble is blocked.

func TestWaitGrantsAtOnceWhenAvailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(Config{Rate: 10, Burst: 2})
		start := time.Now()
		for range 2 {
			if err := l.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("waited %v for permits of the burst", d)
		}
	})
}

func TestWaitSleepsUntilThePermit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(Config{Rate: 10, Burst: 1})
		l.Allow()
		start := time.Now()
		if err := l.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 100*time.Millisecond {
			t.Fatalf("waited %v, want 100ms", d)
		}
		if m := l.Metrics(); m.Admitted != 2 {
			t.Fatalf("Metrics = %+v", m)
		}
	})
}

// A wait that would reach the deadline fails at once, with the wait in
// RetryAfter, and leaves the limiter as it was.
func TestWaitFailsAtOnceBeyondDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var hooked time.Duration
		l := New(Config{Rate: 10, Burst: 1, OnLimited: func(d time.Duration) { hooked = d }})
		l.Allow()
		for _, timeout := range []time.Duration{time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond} {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			before := l.tat.Load()
			start := time.Now()
			err := l.Wait(ctx)
			cancel()
			var rl *resilience.RateLimitedError
			if !errors.As(err, &rl) || !errors.Is(err, resilience.ErrRateLimited) {
				t.Fatalf("timeout %v: Wait = %v, want a RateLimitedError", timeout, err)
			}
			if rl.RetryAfter != 100*time.Millisecond || hooked != rl.RetryAfter {
				t.Fatalf("timeout %v: RetryAfter %v, hook %v; want 100ms", timeout, rl.RetryAfter, hooked)
			}
			if d := time.Since(start); d != 0 {
				t.Fatalf("timeout %v: failed after %v, want at once", timeout, d)
			}
			if l.tat.Load() != before {
				t.Fatalf("timeout %v: a refused Wait changed the limiter", timeout)
			}
		}
		// With 1ns more than the wait, it waits and succeeds.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond+time.Nanosecond)
		defer cancel()
		if err := l.Wait(ctx); err != nil {
			t.Fatalf("Wait with time to spare = %v", err)
		}
	})
}

// A wait cancelled while it waits returns ctx.Err() and gives the permit
// back: the next caller waits no longer than if the cancelled one had
// never asked.
func TestWaitCancelGivesThePermitBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(Config{Rate: 10, Burst: 1})
		l.Allow()
		before := l.Tokens()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- l.Wait(ctx) }()
		time.Sleep(30 * time.Millisecond) // fake time: the waiter is parked
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Wait = %v", err)
		}
		if got, want := l.Tokens(), before+0.3; got < want-1e-9 || got > want+1e-9 {
			t.Fatalf("Tokens() = %v after the cancel, want %v (as if the waiter never asked)", got, want)
		}
		start := time.Now()
		if err := l.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 70*time.Millisecond {
			t.Fatalf("the next Wait took %v, want 70ms", d)
		}
		if m := l.Metrics(); m.Admitted != 2 || m.Limited != 0 {
			t.Fatalf("Metrics = %+v: a cancelled wait counts in neither", m)
		}
	})
}

func TestWaitOnDoneContext(t *testing.T) {
	l, _ := newFake(Config{Rate: 10})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := l.Tokens()
	if err := l.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a done context = %v", err)
	}
	if l.Tokens() != before {
		t.Fatal("Wait on a done context took a permit")
	}
}

func TestKeyedWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := NewKeyed(KeyedConfig{Rate: 10, Burst: 1})
		k.Allow("a")
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		var rl *resilience.RateLimitedError
		if err := k.Wait(ctx, "a"); !errors.As(err, &rl) || rl.RetryAfter != 100*time.Millisecond {
			t.Fatalf("Wait(a) = %v, want RetryAfter 100ms", err)
		}
		if err := k.Wait(ctx, "b"); err != nil {
			t.Fatalf("Wait(b) = %v: b has its own limiter", err)
		}
		start := time.Now()
		if err := k.Wait(context.Background(), "a"); err != nil || time.Since(start) != 100*time.Millisecond {
			t.Fatalf("Wait(a) = %v after %v", err, time.Since(start))
		}
		ctx2, cancel2 := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- k.Wait(ctx2, "a") }()
		synctest.Wait()
		cancel2()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Wait = %v", err)
		}
		start = time.Now()
		if err := k.Wait(context.Background(), "a"); err != nil || time.Since(start) != 100*time.Millisecond {
			t.Fatalf("Wait(a) after a cancelled wait = %v after %v, want 100ms", err, time.Since(start))
		}
	})
}
