package retry_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/retry"
)

// errUnavailable stands for a transient failure such as a network glitch.
var errUnavailable = errors.New("service unavailable")

// flaky returns a function that fails n times, then succeeds.
func flaky(n int) func(ctx context.Context) error {
	calls := 0
	return func(ctx context.Context) error {
		calls++
		if calls <= n {
			return errUnavailable
		}
		return nil
	}
}

// The basic use: at most three attempts in all.
func Example() {
	policy := retry.New(3) // max 3 attempts

	err := policy.Do(context.Background(), func(ctx context.Context) error {
		// Your operation here, for instance an API call.
		return flaky(0)(ctx)
	})
	fmt.Println("error:", err)
	// Output: error: <nil>
}

// Five attempts with exponential backoff of 100ms,
// doubling up to 10s. New is the shorthand for NewFromConfig: each option
// sets one field of the Config.
func ExampleNew() {
	policy := retry.New(5, retry.WithBackoff(retry.Exponential(100*time.Millisecond, 10*time.Second, 2.0)))

	flakyOperation := flaky(2)
	attempts := 0
	err := policy.Do(context.Background(), func(ctx context.Context) error {
		attempts++
		return flakyOperation(ctx)
	})
	fmt.Println("error:", err, "after", attempts, "attempts")
	// Output: error: <nil> after 3 attempts
}

// The same policy as a Config, with an event hook: OnRetry is told of every
// retry before its wait.
func ExampleNewFromConfig() {
	policy := retry.NewFromConfig(retry.Config{
		MaxAttempts: 5,
		Backoff:     retry.Exponential(100*time.Millisecond, 10*time.Second, 2.0),
		OnRetry: func(ctx context.Context, attempt int, err error, delay time.Duration) {
			fmt.Printf("attempt %d failed (%v), retrying in %v\n", attempt, err, delay)
		},
	})

	flakyOperation := flaky(2)
	err := policy.Do(context.Background(), func(ctx context.Context) error {
		return flakyOperation(ctx)
	})
	fmt.Println("error:", err)
	// Output:
	// attempt 1 failed (service unavailable), retrying in 100ms
	// attempt 2 failed (service unavailable), retrying in 200ms
	// error: <nil>
}

// Validate reports every value NewFromConfig would have to clamp, each as a
// *resilience.FieldError.
func ExampleConfig_Validate() {
	err := retry.Config{MaxAttempts: -1, MaxDuration: -time.Second}.Validate()
	for _, fe := range resilience.FieldErrors(err) {
		fmt.Println(fe.Field, fe.Value)
	}
	// Output:
	// MaxAttempts -1
	// MaxDuration -1s
}

// When every attempt fails, Do returns a *resilience.RetriesExhaustedError
// that unwraps to the last error.
func ExamplePolicy_Do_exhausted() {
	policy := retry.New(3, retry.WithBackoff(retry.Constant(time.Millisecond)))

	err := policy.Do(context.Background(), flaky(10))

	var exhausted *resilience.RetriesExhaustedError
	if errors.As(err, &exhausted) {
		fmt.Println("attempts:", exhausted.Attempts)
	}
	fmt.Println("last error is unavailable:", errors.Is(err, errUnavailable))
	// Output:
	// attempts: 3
	// last error is unavailable: true
}

// Custom retry conditions: retry transient failures only, and return the
// others, such as "not found", at once.
func ExampleWithRetryIf() {
	errNotFound := errors.New("user not found")
	policy := retry.New(2, retry.WithRetryIf(func(err error) bool {
		return errors.Is(err, errUnavailable)
	}))

	calls := 0
	err := policy.Do(context.Background(), func(ctx context.Context) error {
		calls++
		return errNotFound // not transient: fail at once
	})
	fmt.Println(err, "after", calls, "call")
	// Output: user not found after 1 call
}

// Permanent stops retrying from inside the function.
func ExamplePermanent() {
	policy := retry.New(5)
	errInvalid := errors.New("invalid argument")

	calls := 0
	err := policy.Do(context.Background(), func(ctx context.Context) error {
		calls++
		return retry.Permanent(errInvalid)
	})
	fmt.Println(err == errInvalid, calls)
	// Output: true 1
}

func ExampleDoValue() {
	policy := retry.New(3, retry.WithBackoff(retry.Constant(time.Millisecond)))

	attempt := 0
	body, err := retry.DoValue(context.Background(), policy, func(ctx context.Context) (string, error) {
		attempt++
		if attempt == 1 {
			return "", errUnavailable
		}
		return "hello", nil
	})
	fmt.Println(body, err)
	// Output: hello <nil>
}

// DoAttempt tells the function which attempt it runs and how long the
// engine waited before it.
func ExamplePolicy_DoAttempt() {
	policy := retry.New(3, retry.WithBackoff(retry.Constant(time.Millisecond)))

	_ = policy.DoAttempt(context.Background(), func(ctx context.Context, a retry.Attempt) error {
		fmt.Printf("attempt %d after %v\n", a.Num, a.Delay)
		if a.Num < 3 {
			return errUnavailable
		}
		return nil
	})
	// Output:
	// attempt 1 after 0s
	// attempt 2 after 1ms
	// attempt 3 after 1ms
}

// The delays of Exponential(100ms, 10s, 2.0), the default backoff.
func ExampleExponential() {
	b := retry.Exponential(100*time.Millisecond, 10*time.Second, 2.0)
	for n := 1; n <= 9; n++ {
		d, _ := b.Delay(retry.Step{Retry: n})
		fmt.Print(d, " ")
	}
	fmt.Println()
	// Output: 100ms 200ms 400ms 800ms 1.6s 3.2s 6.4s 10s 10s
}

// A token bucket shared between two policies caps their retries together,
// as gRPC's retryThrottling does for a channel.
func ExampleNewTokenBucket() {
	budget := retry.NewTokenBucket(10, 0.1) // retries while more than 5 tokens
	var denied int
	reads := retry.NewFromConfig(retry.Config{
		MaxAttempts:    3,
		Backoff:        retry.Constant(0),
		Budget:         budget,
		OnBudgetDenied: func(context.Context, int, error) { denied++ },
	})
	writes := reads.With(retry.WithMaxAttempts(2)) // shares the budget and the hook

	for range 3 {
		_ = reads.Do(context.Background(), flaky(10))
		_ = writes.Do(context.Background(), flaky(10))
	}
	fmt.Printf("tokens left: %.1f, calls denied a retry: %d\n", budget.Tokens(), denied)
	// Output: tokens left: 1.0, calls denied a retry: 4
}

// A budget whose floor counts inside its ratio: the retries of the last 10
// seconds may reach 20% of the calls of those 10 seconds, or 10 retries
// when 20% of the calls is fewer. A fresh budget has its floor.
func ExampleNewRatioBudgetFromConfig() {
	cfg := retry.RatioBudgetConfig{
		TTL:                 10 * time.Second,
		MinRetriesPerSecond: 1,
		Ratio:               0.2,
		FloorInsideRatio:    true,
	}
	if err := cfg.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	budget := retry.NewRatioBudgetFromConfig(cfg)
	fmt.Println("available at start:", budget.Available())
	for range 100 {
		budget.Record(1, retry.Success)
	}
	fmt.Println("after 100 calls:", budget.Available())
	// Output:
	// available at start: 10
	// after 100 calls: 20
}

// A caller that measures each attempt's latency reads the clock once after
// the attempt and hands that reading to NextAt, which then reads no clock
// itself: the budget, the deadline and MaxDuration use it.
func ExampleCall_NextAt() {
	policy := retry.New(3,
		retry.WithBackoff(retry.Constant(time.Millisecond)),
		retry.WithBudget(retry.NewRatioBudget(10*time.Second, 10, 0.2)))
	ctx := context.Background()
	attempt := flaky(1)

	c := policy.Start()
	for {
		start := time.Now()
		err := attempt(ctx)
		end := time.Now()
		latency := end.Sub(start)
		_ = latency // recorded by the caller's metrics
		n := c.Attempt().Num
		d := c.NextAt(ctx, err, end)
		if !d.Retry {
			fmt.Println("error:", d.Err, "after attempt", n)
			return
		}
		if err := c.Wait(ctx, d.Delay); err != nil {
			fmt.Println(err)
			return
		}
	}
	// Output: error: <nil> after attempt 2
}
