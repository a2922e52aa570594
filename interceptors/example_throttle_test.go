package interceptors_test

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// Adaptive throttling next to a circuit breaker: while the server refuses
// most of what it gets, the client rejects attempts itself, with
// UNAVAILABLE matching resilience.ErrThrottled, so that the overloaded
// server spends less of its capacity refusing work. The breaker, which
// opens only after 1000 consecutive failures here, stays closed.
func ExampleThrottlePolicy() {
	pipeline, err := interceptors.NewClient(interceptors.Config{Default: interceptors.Policy{
		Breaker:  &interceptors.BreakerPolicy{FailureThreshold: 1000},
		Throttle: &interceptors.ThrottlePolicy{K: 2, MinRequests: 10},
	}})
	if err != nil {
		panic(err)
	}
	client, srv, stop := dial(pipeline.UnaryClientInterceptor())
	defer stop()

	overloaded := &testingv1.Behavior{FailAttempts: -1, FailCode: uint32(codes.ResourceExhausted)}
	throttled := 0
	for range 200 {
		_, err := client.Unary(context.Background(), &testingv1.UnaryRequest{Behavior: overloaded})
		if errors.Is(err, resilience.ErrThrottled) && status.Code(err) == codes.Unavailable {
			throttled++
		}
	}
	fmt.Println("most attempts stayed on the client:", throttled > 150)
	fmt.Println("attempts the server saw plus throttled:", srv.Service().TotalAttempts()+throttled)
	// Output:
	// most attempts stayed on the client: true
	// attempts the server saw plus throttled: 200
}
