package classify_test

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
)

func ExampleTable_Retryable() {
	tab := classify.Default()
	fmt.Println(tab.Retryable(classify.Attempt{Code: codes.Unavailable}))
	fmt.Println(tab.Retryable(classify.Attempt{Code: codes.InvalidArgument}))
	// RESOURCE_EXHAUSTED only with the server's permission.
	pb := classify.PushbackOf(status.New(codes.ResourceExhausted, "busy"), metadata.Pairs("grpc-retry-pushback-ms", "200"))
	fmt.Println(tab.Retryable(classify.Attempt{Code: codes.ResourceExhausted, Pushback: pb}), pb.Delay)
	// Output:
	// true
	// false
	// true 200ms
}

func ExampleTable_With() {
	// Retry ABORTED, but only for idempotent methods.
	tab := classify.Default().With(codes.Aborted, classify.Rule{Retry: classify.RetryIfIdempotent, Breaker: classify.BreakerIgnore})
	fmt.Println(tab.Retryable(classify.Attempt{Code: codes.Aborted, Idempotent: true}))
	fmt.Println(tab.Retryable(classify.Attempt{Code: codes.Aborted}))
	// Output:
	// true
	// false
}

func ExampleIdempotentByDescriptor() {
	fmt.Println(classify.IdempotentByDescriptor("/grpcresilience.testing.v1.TestService/Query"))
	fmt.Println(classify.IdempotentByDescriptor("/grpcresilience.testing.v1.TestService/Unary"))
	// Output:
	// true
	// false
}
