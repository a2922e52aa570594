package resilience_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

func slowQuery(ctx context.Context) error {
	select {
	case <-time.After(time.Second):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func ExampleWithTimeout() {
	err := resilience.WithTimeout(context.Background(), 10*time.Millisecond, func(ctx context.Context) error {
		return slowQuery(ctx)
	})
	var te *resilience.TimeoutError
	if errors.As(err, &te) {
		fmt.Println("operation timed out after", te.After)
	}
	fmt.Println("matches context.DeadlineExceeded:", errors.Is(err, context.DeadlineExceeded))
	// Output:
	// operation timed out after 10ms
	// matches context.DeadlineExceeded: true
}

func ExampleRetriesExhaustedError() {
	err := error(&resilience.RetriesExhaustedError{Attempts: 3, Err: errors.New("connection refused")})
	var re *resilience.RetriesExhaustedError
	if errors.As(err, &re) {
		fmt.Println("gave up after", re.Attempts, "attempts:", re.Err)
	}
	// Output: gave up after 3 attempts: connection refused
}
