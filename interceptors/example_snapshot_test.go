package interceptors_test

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// A snapshot shows, for each method and target the client has called, the
// breaker, bulkhead and retry budget in force: what a console or a health
// page displays.
func ExampleClient_Snapshot() {
	pipeline, err := interceptors.NewClient(interceptors.Config{Default: interceptors.Policy{
		Retry:    &interceptors.RetryPolicy{MaxAttempts: 3, Backoff: interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: time.Millisecond}},
		Breaker:  &interceptors.BreakerPolicy{FailureThreshold: 5},
		Bulkhead: &interceptors.BulkheadPolicy{Limit: 10},
	}})
	if err != nil {
		panic(err)
	}
	client, _, stop := dial(pipeline.UnaryClientInterceptor())
	defer stop()
	_, err = client.Unary(context.Background(), &testingv1.UnaryRequest{
		Behavior: &testingv1.Behavior{CallId: "c1", FailAttempts: 1, FailCode: uint32(codes.Unavailable)},
	})
	if err != nil {
		panic(err)
	}

	for _, m := range pipeline.Snapshot().Methods {
		fmt.Println(m.Method, m.Pattern)
		fmt.Printf("breaker %v: %d calls, %d failures\n", m.Breaker.Metrics.State, m.Breaker.Metrics.Calls, m.Breaker.Metrics.Failures)
		fmt.Printf("bulkhead: %d of %d in flight\n", m.Bulkhead.Metrics.InFlight, m.Bulkhead.Metrics.Limit)
		fmt.Println("budget:", m.Budget.Type)
	}
	// Output:
	// /grpcresilience.testing.v1.TestService/Unary retry
	// breaker closed: 2 calls, 1 failures
	// bulkhead: 0 of 10 in flight
	// budget: *retry.RatioBudget
}

// Subscribe adds an observer to a running client, here one that counts
// retries, without changing its configuration; cancel removes it.
func ExampleClient_Subscribe() {
	pipeline, err := interceptors.NewClient(interceptors.Config{Default: interceptors.Policy{
		Retry: &interceptors.RetryPolicy{MaxAttempts: 3, Backoff: interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: time.Millisecond}},
	}})
	if err != nil {
		panic(err)
	}
	client, _, stop := dial(pipeline.UnaryClientInterceptor())
	defer stop()

	retries := make(chan interceptors.Event, 10)
	cancel := pipeline.Subscribe(interceptors.Observer{OnEvent: func(_ context.Context, e interceptors.Event) {
		if e.Kind == interceptors.EventRetry {
			retries <- e
		}
	}})
	_, err = client.Unary(context.Background(), &testingv1.UnaryRequest{
		Behavior: &testingv1.Behavior{CallId: "c1", FailAttempts: 2, FailCode: uint32(codes.Unavailable)},
	})
	if err != nil {
		panic(err)
	}
	cancel()
	fmt.Println("retries heard:", len(retries))
	// Output:
	// retries heard: 2
}
