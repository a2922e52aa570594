// Command basic shows the engines without gRPC:
// a retry policy, a circuit breaker, a timeout, and the three layered in the
// recommended order (timeout innermost, breaker in the middle, retry
// outermost).
package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/retry"
)

// flaky fails its first failures calls, then succeeds.
type flaky struct {
	failures, calls int
}

func (f *flaky) call(context.Context) error {
	f.calls++
	if f.calls <= f.failures {
		return fmt.Errorf("glitch %d", f.calls)
	}
	return nil
}

func main() {
	ctx := context.Background()

	// Retry: at most 3 attempts in all, with exponential backoff.
	op := &flaky{failures: 2}
	p := retry.New(3, retry.WithBackoff(retry.Exponential(time.Millisecond, 10*time.Millisecond, 2.0)))
	err := p.Do(ctx, op.call)
	fmt.Printf("retry: err=%v after %d calls\n", err, op.calls)

	op = &flaky{failures: 5}
	err = p.Do(ctx, op.call)
	var exhausted *resilience.RetriesExhaustedError
	if errors.As(err, &exhausted) {
		fmt.Printf("retry: gave up after %d attempts, last error: %v\n", exhausted.Attempts, exhausted.Err)
	}

	// Circuit breaker: 5 failures in a row open it; then calls fail fast.
	b := breaker.New(breaker.Config{FailureThreshold: 5, Timeout: 60 * time.Second, SuccessThreshold: 2})
	down := func(context.Context) error { return errors.New("connection refused") }
	for range 5 {
		_ = b.Execute(ctx, down)
	}
	fmt.Println("breaker: state after 5 failures:", b.State())
	ran := false
	err = b.Execute(ctx, func(context.Context) error { ran = true; return nil })
	fmt.Printf("breaker: fails fast: %v (ran: %v)\n", errors.Is(err, resilience.ErrCircuitOpen), ran)

	// Timeout: the slow query gives up after 20ms.
	err = resilience.WithTimeout(ctx, 20*time.Millisecond, func(ctx context.Context) error {
		select {
		case <-time.After(time.Second):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	var te *resilience.TimeoutError
	if errors.As(err, &te) {
		fmt.Println("timeout: operation timed out after", te.After)
	}

	// Combined: retry(breaker(timeout(op))). The first attempt hangs and
	// times out, the second succeeds.
	b = breaker.New(breaker.Config{})
	attempts := 0
	err = retry.New(3, retry.WithBackoff(retry.Constant(time.Millisecond))).Do(ctx, func(ctx context.Context) error {
		return b.Execute(ctx, func(ctx context.Context) error {
			return resilience.WithTimeout(ctx, 20*time.Millisecond, func(ctx context.Context) error {
				attempts++
				if attempts == 1 {
					<-ctx.Done()
					return ctx.Err()
				}
				return nil
			})
		})
	})
	fmt.Printf("combined: err=%v after %d attempts, breaker %v\n", err, attempts, b.State())
}
