package resilience_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Every test runs in a synctest bubble: time is fake and advances only
// when every goroutine in the bubble is blocked, so no test sleeps.

func TestWithTimeoutReturnsFnResult(t *testing.T) {
	errFn := errors.New("fn failed")
	for _, want := range []error{nil, errFn, context.DeadlineExceeded} {
		synctest.Test(t, func(t *testing.T) {
			got := resilience.WithTimeout(context.Background(), time.Second, func(ctx context.Context) error {
				time.Sleep(999 * time.Millisecond) // fn's own work, on the fake clock
				return want
			})
			if got != want {
				t.Errorf("got %v, want fn's error %v unchanged", got, want)
			}
		})
	}
}

func TestWithTimeoutFiresWhenFnIgnoresItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		fnDone := make(chan struct{})
		start := time.Now()
		err := resilience.WithTimeout(context.Background(), 5*time.Second, func(ctx context.Context) error {
			defer close(fnDone)
			<-release // ignores ctx entirely
			return errors.New("too late")
		})
		if elapsed := time.Since(start); elapsed != 5*time.Second {
			t.Errorf("returned after %v, want exactly the 5s timeout", elapsed)
		}
		var te *resilience.TimeoutError
		if !errors.As(err, &te) || te.After != 5*time.Second {
			t.Fatalf("got %v, want *TimeoutError{After: 5s}", err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("errors.Is(%v, context.DeadlineExceeded) = false", err)
		}
		// fn keeps running after the caller returned, and finishes by itself.
		close(release)
		<-fnDone
	})
}

func TestWithTimeoutCancelsFnContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		causes := make(chan error, 1)
		err := resilience.WithTimeout(context.Background(), time.Second, func(ctx context.Context) error {
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return ctx.Err()
		})
		cause := <-causes
		var te *resilience.TimeoutError
		if !errors.As(err, &te) {
			t.Fatalf("got %v, want *TimeoutError", err)
		}
		if !errors.As(cause, &te) {
			t.Errorf("fn's context cause = %v, want the *TimeoutError", cause)
		}
	})
}

func TestWithTimeoutParentCancellationIsNotATimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Second, cancel)
		for _, honours := range []bool{true, false} {
			block := make(chan struct{})
			err := resilience.WithTimeout(ctx, time.Minute, func(fctx context.Context) error {
				if honours {
					<-fctx.Done()
					return fctx.Err()
				}
				<-block
				return nil
			})
			close(block)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("fn honours ctx %v: got %v, want context.Canceled", honours, err)
			}
			var te *resilience.TimeoutError
			if errors.As(err, &te) {
				t.Errorf("fn honours ctx %v: got a *TimeoutError for a cancelled parent", honours)
			}
		}
	})
}

func TestWithTimeoutParentDeadlineIsTheParents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := resilience.WithTimeout(ctx, time.Minute, func(ctx context.Context) error {
			<-ctx.Done()
			return errors.New("fn saw the end")
		})
		var te *resilience.TimeoutError
		if err != context.DeadlineExceeded || errors.As(err, &te) {
			t.Errorf("got %v, want the parent's context.DeadlineExceeded, not a *TimeoutError", err)
		}
	})
}

func TestWithTimeoutDoneParentDoesNotRunFn(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	err := resilience.WithTimeout(ctx, time.Second, func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, context.Canceled) || ran {
		t.Errorf("got %v (ran %v), want context.Canceled without running fn", err, ran)
	}
}

func TestWithTimeoutNonPositiveTimesOutAtOnce(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		ran := false
		err := resilience.WithTimeout(context.Background(), d, func(context.Context) error { ran = true; return nil })
		var te *resilience.TimeoutError
		if !errors.As(err, &te) || te.After != d || ran {
			t.Errorf("d=%v: got %v (ran %v), want *TimeoutError{After: d} without running fn", d, err, ran)
		}
	}
}

// TestWithTimeoutParentCancelledByFn checks that when fn cancels the parent
// and returns nil, WithTimeout keeps fn's nil if it arrives first and
// reports the parent's context.Canceled if the caller saw the cancellation
// first (the two race), never a timeout nor anything else.
func TestWithTimeoutParentCancelledByFn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		err := resilience.WithTimeout(ctx, time.Minute, func(context.Context) error {
			cancel()
			return nil
		})
		if err != nil && err != context.Canceled {
			t.Errorf("got %v, want nil (fn finished its work) or context.Canceled (the caller saw the cancellation first)", err)
		}
	})
}

func TestWithTimeoutPanicReachesCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want boom", r)
			}
		}()
		_ = resilience.WithTimeout(context.Background(), time.Second, func(context.Context) error { panic("boom") })
		t.Error("WithTimeout returned instead of panicking")
	})
}

func TestErrorsMatchTheirVocabulary(t *testing.T) {
	last := errors.New("unavailable")
	var err error = &resilience.RetriesExhaustedError{Attempts: 3, Err: last}
	if !errors.Is(err, last) {
		t.Error("RetriesExhaustedError does not unwrap to the last error")
	}
	if got, want := err.Error(), "resilience: 3 attempts failed, last error: unavailable"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	te := &resilience.TimeoutError{After: 5 * time.Second}
	if got, want := te.Error(), "resilience: timed out after 5s"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !te.Timeout() || errors.Is(te, context.Canceled) {
		t.Error("TimeoutError must be a timeout and must not match context.Canceled")
	}
}

func BenchmarkWithTimeout(b *testing.B) {
	b.ReportAllocs()
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	for b.Loop() {
		if err := resilience.WithTimeout(ctx, time.Second, fn); err != nil {
			b.Fatal(err)
		}
	}
}
