// Command grpcclient is a resilient gRPC client: the pipeline of package
// interceptors retries transient failures, leaves the others alone, takes
// per-call overrides, and opens its circuit breaker when a method keeps
// failing, after which calls fail fast without reaching the server.
//
// It talks to the test service, served in the same process on loopback,
// whose requests say how each attempt should fail.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "grpcclient:", err)
		os.Exit(1)
	}
}

// retryPrinter returns an Observer that prints the retries the pipeline
// decides and its breaker's changes of state.
func retryPrinter(out io.Writer) interceptors.Observer {
	return interceptors.Observer{OnEvent: func(_ context.Context, e interceptors.Event) {
		switch e.Kind {
		case interceptors.EventRetry:
			fmt.Fprintf(out, "  attempt %d failed with %s; retry in %v\n", e.Attempt, status.Code(e.Err), e.Delay)
		case interceptors.EventBreakerStateChange:
			fmt.Fprintf(out, "  breaker %s -> %s\n", e.StateChange.From, e.StateChange.To)
		case interceptors.EventBreakerRejected:
			fmt.Fprintf(out, "  attempt %d rejected by the %s breaker\n", e.Attempt, e.BreakerState)
		}
	}}
}

func run(out io.Writer) error {
	srv, err := testservice.Start(testservice.WithTCP("127.0.0.1:0"))
	if err != nil {
		return err
	}
	defer srv.Stop()

	pipeline, err := interceptors.NewClient(interceptors.Config{
		Default: interceptors.Policy{
			Retry: &interceptors.RetryPolicy{
				MaxAttempts: 4,
				Backoff:     interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: 10 * time.Millisecond},
				Jitter:      interceptors.JitterNone, // so that the delays printed are always the same
			},
			// One breaker per method: 3 failed attempts in a row open it
			// for a minute.
			Breaker:        &interceptors.BreakerPolicy{FailureThreshold: 3, OpenDuration: time.Minute},
			DefaultTimeout: 5 * time.Second,
		},
		Observer: retryPrinter(out),
	})
	if err != nil {
		return err
	}
	conn, err := srv.Dial(
		grpc.WithDisableRetry(), // the pipeline retries; gRPC's own retries would multiply its attempts
		grpc.WithChainUnaryInterceptor(pipeline.UnaryClientInterceptor()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := testingv1.NewTestServiceClient(conn)
	ctx := context.Background()
	attempts := func(callID string) int { return srv.Service().Attempts(callID) }

	fmt.Fprintln(out, "1. UNAVAILABLE twice, then an answer: retried with backoff")
	resp, err := client.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "flaky", FailAttempts: 2}})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  answered by attempt %d, which carried grpc-previous-rpc-attempts: %s\n",
		resp.GetReply().GetAttempt(), resp.GetReply().GetPreviousRpcAttempts())

	fmt.Fprintln(out, "2. INVALID_ARGUMENT: an answer, not a failure; not retried")
	_, err = client.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{
		CallId: "invalid", FailAttempts: 1, FailCode: uint32(codes.InvalidArgument),
	}})
	fmt.Fprintf(out, "  %s after %d attempt\n", status.Code(err), attempts("invalid"))

	fmt.Fprintln(out, "3. Per call: a 50ms timeout per attempt; Query has no side effects, so a timed-out attempt is retried")
	qresp, err := client.Query(ctx, &testingv1.QueryRequest{Behavior: &testingv1.Behavior{
		CallId: "slow-once", Sleep: durationpb.New(time.Hour), SleepAttempts: 1,
	}}, interceptors.WithAttemptTimeout(50*time.Millisecond))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  answered by attempt %d\n", qresp.GetReply().GetAttempt())

	fmt.Fprintln(out, "4. Per call: at most 2 attempts")
	_, err = client.Query(ctx, &testingv1.QueryRequest{Behavior: &testingv1.Behavior{CallId: "down", FailAttempts: -1}},
		interceptors.WithMaxAttempts(2))
	var exhausted *resilience.RetriesExhaustedError
	if !errors.As(err, &exhausted) {
		return fmt.Errorf("step 4: %v is not a *RetriesExhaustedError", err)
	}
	fmt.Fprintf(out, "  %s: retries exhausted after %d attempts; the server saw %d\n", status.Code(err), exhausted.Attempts, attempts("down"))

	fmt.Fprintln(out, "5. Per call: no retry at all")
	_, err = client.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "once", FailAttempts: -1}},
		interceptors.DisableRetry())
	fmt.Fprintf(out, "  %s after %d attempt\n", status.Code(err), attempts("once"))

	fmt.Fprintln(out, "6. A method that keeps failing: its breaker opens, and the next calls fail fast")
	for i := 1; i <= 2; i++ {
		callID := fmt.Sprintf("outage-%d", i)
		_, err = client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: &testingv1.Behavior{CallId: callID, FailAttempts: -1}})
		fmt.Fprintf(out, "  call %d: %s, circuit open: %t, the server saw %d attempts\n",
			i, status.Code(err), errors.Is(err, resilience.ErrCircuitOpen), attempts(callID))
	}
	b := pipeline.Breaker(conn.Target(), testingv1.TestService_IdempotentUnary_FullMethodName)
	fmt.Fprintf(out, "  IdempotentUnary's breaker is %s; Query's is %s\n",
		b.State(), pipeline.Breaker(conn.Target(), testingv1.TestService_Query_FullMethodName).State())
	return nil
}
