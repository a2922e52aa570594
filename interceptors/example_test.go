package interceptors_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	grpcmw "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// dial starts a test server and dials it through the interceptors, with
// gRPC's own retries disabled so that attempts do not multiply.
func dial(ints ...grpc.UnaryClientInterceptor) (testingv1.TestServiceClient, *testservice.Server, func()) {
	srv, err := testservice.Start()
	if err != nil {
		panic(err)
	}
	conn, err := srv.Dial(grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(ints...))
	if err != nil {
		panic(err)
	}
	return testingv1.NewTestServiceClient(conn), srv, func() { conn.Close(); srv.Stop() }
}

// One pipeline: retries with backoff, a circuit breaker per method and a
// default deadline. The server fails twice with UNAVAILABLE; the third
// attempt answers, and says how many attempts came before it.
func Example() {
	pipeline, err := interceptors.NewClient(interceptors.Config{
		Default: interceptors.Policy{
			Retry: &interceptors.RetryPolicy{
				MaxAttempts: 4,
				Backoff:     interceptors.Backoff{Initial: 10 * time.Millisecond, Max: time.Second}, // exponential, doubling
			},
			Breaker:        &interceptors.BreakerPolicy{FailureThreshold: 5, OpenDuration: 30 * time.Second},
			DefaultTimeout: 5 * time.Second,
		},
	})
	if err != nil {
		panic(err)
	}
	client, _, stop := dial(pipeline.UnaryClientInterceptor())
	defer stop()

	resp, err := client.Unary(context.Background(), &testingv1.UnaryRequest{
		Behavior: &testingv1.Behavior{CallId: "c1", FailAttempts: 2, FailCode: uint32(codes.Unavailable)},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("answered by attempt", resp.GetReply().GetAttempt())
	fmt.Println("grpc-previous-rpc-attempts:", resp.GetReply().GetPreviousRpcAttempts())
	// Output:
	// answered by attempt 3
	// grpc-previous-rpc-attempts: 2
}

// Per-method policies: Query, which has no side effects, is hedged; every
// other method is retried. A per-call option turns retries off for one
// call, whose error is then the server's status, unchanged.
func ExampleConfig() {
	pipeline, err := interceptors.NewClient(interceptors.Config{
		Default: interceptors.Policy{Retry: &interceptors.RetryPolicy{
			MaxAttempts: 3,
			Backoff:     interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: time.Millisecond},
		}},
		Methods: map[string]interceptors.Policy{
			testingv1.TestService_Query_FullMethodName: {
				Hedging: &interceptors.HedgingPolicy{MaxExtraAttempts: 1, Delay: 20 * time.Millisecond},
			},
		},
	})
	if err != nil {
		panic(err)
	}
	client, srv, stop := dial(pipeline.UnaryClientInterceptor())
	defer stop()
	ctx := context.Background()

	// The first attempt of the query is slow: the hedge answers.
	resp, err := client.Query(ctx, &testingv1.QueryRequest{Behavior: &testingv1.Behavior{
		CallId: "q", Sleep: durationpbOf(5 * time.Second), SleepAttempts: 1,
	}})
	if err != nil {
		panic(err)
	}
	fmt.Println("query answered by attempt", resp.GetReply().GetAttempt())

	_, err = client.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "once", FailAttempts: -1}},
		interceptors.DisableRetry())
	fmt.Println(status.Code(err), "after", srv.Service().Attempts("once"), "attempt")
	// Output:
	// query answered by attempt 2
	// Unavailable after 1 attempt
}

// A single pattern applied to one method only: a Client whose policy is a
// breaker alone, installed with go-grpc-middleware's selector. Once open,
// it fails fast with UNAVAILABLE that still matches
// resilience.ErrCircuitOpen, and the server is not called.
func ExampleClient_UnaryClientInterceptor() {
	brk, err := interceptors.NewClient(interceptors.Config{
		Default: interceptors.Policy{Breaker: &interceptors.BreakerPolicy{FailureThreshold: 2, OpenDuration: time.Minute}},
	})
	if err != nil {
		panic(err)
	}
	onlyUnary := selector.MatchFunc(func(_ context.Context, c grpcmw.CallMeta) bool { return c.Method == "Unary" })
	client, srv, stop := dial(selector.UnaryClientInterceptor(brk.UnaryClientInterceptor(), onlyUnary))
	defer stop()
	ctx := context.Background()

	failing := &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "down", FailAttempts: -1, FailCode: uint32(codes.Internal)}}
	for range 3 {
		_, err = client.Unary(ctx, failing)
		fmt.Println(status.Code(err), errors.Is(err, resilience.ErrCircuitOpen))
	}
	fmt.Println("server saw", srv.Service().Attempts("down"), "attempts")
	// Output:
	// Internal false
	// Internal false
	// Unavailable true
	// server saw 2 attempts
}

// A fallback answers from a cache when the call fails with one of its
// codes, here after every retry failed: the fallback runs outside the
// retries, so it sees the final error.
func ExampleFallbackPolicy() {
	pipeline, err := interceptors.NewClient(interceptors.Config{Default: interceptors.Policy{
		Retry: &interceptors.RetryPolicy{
			MaxAttempts: 2,
			Backoff:     interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: time.Millisecond},
		},
		Fallback: &interceptors.FallbackPolicy{
			Func: func(_ context.Context, _ string, _, reply any, err error) error {
				if r, ok := reply.(*testingv1.UnaryResponse); ok {
					r.Reply = &testingv1.Reply{Payload: []byte("cached")}
					return nil
				}
				return err
			},
		},
	}})
	if err != nil {
		panic(err)
	}
	client, _, stop := dial(pipeline.UnaryClientInterceptor())
	defer stop()
	resp, err := client.Unary(context.Background(), &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{FailAttempts: -1}})
	fmt.Println(string(resp.GetReply().GetPayload()), err)
	// Output:
	// cached <nil>
}

func durationpbOf(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// A server stream retried until it is committed: the first attempt fails
// before sending anything, so the pipeline opens a second one and the
// application reads its messages as if nothing had happened. Had the
// server failed after a message, the application would get that message
// and then the error, never a duplicate.
func ExampleClient_StreamClientInterceptor() {
	pipeline, err := interceptors.NewClient(interceptors.Config{Default: interceptors.Policy{
		Retry: &interceptors.RetryPolicy{
			MaxAttempts: 3,
			Backoff:     interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: 10 * time.Millisecond},
		},
	}})
	if err != nil {
		panic(err)
	}
	srv, err := testservice.Start()
	if err != nil {
		panic(err)
	}
	defer srv.Stop()
	conn, err := srv.Dial(grpc.WithDisableRetry(), grpc.WithChainStreamInterceptor(pipeline.StreamClientInterceptor()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	client := testingv1.NewTestServiceClient(conn)

	stream, err := client.ServerStream(context.Background(), &testingv1.ServerStreamRequest{
		Behavior: &testingv1.Behavior{CallId: "s1", FailAttempts: 1, StreamMessages: 3},
	})
	if err != nil {
		panic(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			fmt.Println("end:", err)
			break
		}
		fmt.Println("message", resp.GetReply().GetSequence(), "from attempt", resp.GetReply().GetAttempt())
	}
	fmt.Println("server saw", srv.Service().Attempts("s1"), "attempts")
	// Output:
	// message 0 from attempt 2
	// message 1 from attempt 2
	// message 2 from attempt 2
	// end: EOF
	// server saw 2 attempts
}

// An Observer is a struct of optional hooks; here only OnEvent is set, to
// print the retries. A constant backoff without jitter waits exactly its
// Initial delay before every retry.
func ExampleObserver() {
	pipeline, err := interceptors.NewClient(interceptors.Config{
		Default: interceptors.Policy{Retry: &interceptors.RetryPolicy{
			MaxAttempts: 3,
			Backoff:     interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: 20 * time.Millisecond},
			Jitter:      interceptors.JitterNone,
		}},
		Observer: interceptors.Observer{
			OnEvent: func(_ context.Context, e interceptors.Event) {
				if e.Kind == interceptors.EventRetry {
					fmt.Printf("attempt %d failed with %v; retry in %v\n", e.Attempt, status.Code(e.Err), e.Delay)
				}
			},
		},
	})
	if err != nil {
		panic(err)
	}
	client, _, stop := dial(pipeline.UnaryClientInterceptor())
	defer stop()
	resp, err := client.Unary(context.Background(), &testingv1.UnaryRequest{
		Behavior: &testingv1.Behavior{CallId: "o", FailAttempts: 2, FailCode: uint32(codes.Unavailable)},
	})
	fmt.Println("answered by attempt", resp.GetReply().GetAttempt(), err)
	// Output:
	// attempt 1 failed with Unavailable; retry in 20ms
	// attempt 2 failed with Unavailable; retry in 20ms
	// answered by attempt 3 <nil>
}

// NewClient reports every problem of a configuration at once, each a
// *resilience.FieldError naming where it is. Hedging the Unary method,
// whose descriptor declares no idempotency, needs an explicit
// Idempotency: AlwaysIdempotent.
func ExampleNewClient() {
	_, err := interceptors.NewClient(interceptors.Config{
		Default: interceptors.Policy{Retry: &interceptors.RetryPolicy{MaxAttempts: -1}},
		Methods: map[string]interceptors.Policy{
			testingv1.TestService_Unary_FullMethodName: {Hedging: &interceptors.HedgingPolicy{}},
		},
		MaxKeys: -1,
	})
	for _, fe := range resilience.FieldErrors(err) {
		fmt.Println(fe.Field, fe.Value)
	}
	// Output:
	// Default.Retry.MaxAttempts -1
	// Methods[/grpcresilience.testing.v1.TestService/Unary].Hedging set
	// MaxKeys -1
}
