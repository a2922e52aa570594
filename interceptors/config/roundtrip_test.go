package config_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors/config"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// roundTrip configures one method per pattern: Unary retries 3 times,
// IdempotentUnary has a breaker that opens after 2 failures, Query a
// client bulkhead of 1, and the server runs 1 call per method at once,
// shedding the others without pushback (so that the client's retry of
// Unary, whose table retries RESOURCE_EXHAUSTED only with pushback, does
// not retry them).
const roundTrip = `
method_policies:
  - name: [{service: grpcresilience.testing.v1.TestService, method: Unary}]
    retry:
      max_attempts: 3
      backoff: {kind: constant, delay: 1ms}
      jitter: none
      budget: {kind: none}
  - name: [{service: grpcresilience.testing.v1.TestService, method: IdempotentUnary}]
    breaker: {failure_threshold: 2, open_duration: 60s}
  - name: [{service: grpcresilience.testing.v1.TestService, method: Query}]
    bulkhead: {limit: 1}
server:
  bulkhead: {limit: 1, partition_by: method, no_pushback: true}
`

var transports = []struct {
	name string
	opts []testservice.Option
}{
	{"bufconn", nil},
	{"tcp", []testservice.Option{testservice.WithTCP("")}},
}

// start serves the test service with cfg's server options and dials it
// with cfg's dial options.
func start(t *testing.T, cfg *config.Config, topts []testservice.Option) (*testservice.Server, *grpc.ClientConn) {
	t.Helper()
	sopts, err := cfg.ServerOptions()
	if err != nil {
		t.Fatal(err)
	}
	dopts, err := cfg.DialOptions()
	if err != nil {
		t.Fatal(err)
	}
	srv := testservice.StartTB(t, append([]testservice.Option{testservice.WithServerOptions(sopts...)}, topts...)...)
	return srv, srv.DialTB(t, dopts...)
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestRoundTrip loads a file, builds a client and a server from it over
// bufconn and loopback TCP, and checks each method behaves as configured:
// the attempts of a retry, the threshold of a breaker, the limit of a
// client bulkhead and of a server bulkhead.
func TestRoundTrip(t *testing.T) {
	cfg, err := config.Parse([]byte(roundTrip), config.FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			srv, conn := start(t, cfg, tr.opts)
			svc, client := srv.Service(), testingv1.NewTestServiceClient(conn)

			t.Run("retry makes 3 attempts", func(t *testing.T) {
				_, err := client.Unary(ctxTimeout(t, 10*time.Second), &testingv1.UnaryRequest{Behavior: testservice.Failing("r", -1, codes.Unavailable)})
				if status.Code(err) != codes.Unavailable || !errors.As(err, new(*resilience.RetriesExhaustedError)) {
					t.Fatalf("err = %v, want UNAVAILABLE matching *RetriesExhaustedError", err)
				}
				if got := svc.Attempts("r"); got != 3 {
					t.Fatalf("server saw %d attempts, want 3", got)
				}
			})

			t.Run("breaker opens after 2 failures", func(t *testing.T) {
				for i := range 2 {
					_, err := client.IdempotentUnary(ctxTimeout(t, 10*time.Second), &testingv1.IdempotentUnaryRequest{Behavior: testservice.Failing("b", -1, codes.Internal)})
					if status.Code(err) != codes.Internal {
						t.Fatalf("call %d: err = %v, want INTERNAL", i, err)
					}
				}
				_, err := client.IdempotentUnary(ctxTimeout(t, 10*time.Second), &testingv1.IdempotentUnaryRequest{Behavior: testservice.Failing("b", -1, codes.Internal)})
				if status.Code(err) != codes.Unavailable || !errors.Is(err, resilience.ErrCircuitOpen) {
					t.Fatalf("third call: err = %v, want UNAVAILABLE matching ErrCircuitOpen", err)
				}
				if got := svc.Attempts("b"); got != 2 {
					t.Fatalf("server saw %d attempts, want 2: the open breaker must not call it", got)
				}
			})

			t.Run("client bulkhead admits 1", func(t *testing.T) {
				second := hold(t, svc, func(ctx context.Context, b *testingv1.Behavior) error {
					_, err := client.Query(ctx, &testingv1.QueryRequest{Behavior: b})
					return err
				})
				if status.Code(second) != codes.ResourceExhausted || !errors.Is(second, resilience.ErrBulkheadFull) {
					t.Fatalf("second call: err = %v, want RESOURCE_EXHAUSTED matching ErrBulkheadFull", second)
				}
			})

			t.Run("server bulkhead admits 1 per method", func(t *testing.T) {
				second := hold(t, svc, func(ctx context.Context, b *testingv1.Behavior) error {
					_, err := client.Unary(ctx, &testingv1.UnaryRequest{Behavior: b})
					return err
				})
				if status.Code(second) != codes.ResourceExhausted || errors.Is(second, resilience.ErrBulkheadFull) {
					t.Fatalf("second call: err = %v, want the server's RESOURCE_EXHAUSTED (not the client's bulkhead)", second)
				}
				if got := svc.MethodAttempts(testingv1.TestService_Unary_FullMethodName); got != 4 {
					t.Fatalf("server handled %d Unary attempts in all, want 4 (3 retried, 1 held)", got)
				}
			})
		})
	}
}

// hold starts a call that sleeps in the server, waits until the server
// has it, makes a second call with the same method, and returns the second
// call's error once the first one ended successfully.
func hold(t *testing.T, svc *testservice.Service, call func(ctx context.Context, b *testingv1.Behavior) error) error {
	t.Helper()
	id := t.Name()
	ctx := ctxTimeout(t, 10*time.Second)
	var wg sync.WaitGroup
	var first error
	wg.Add(1)
	go func() {
		defer wg.Done()
		first = call(ctx, &testingv1.Behavior{CallId: id, Sleep: durationpb.New(300 * time.Millisecond)})
	}()
	if err := svc.WaitAttempts(ctx, id, 1); err != nil {
		t.Fatal(err)
	}
	second := call(ctx, &testingv1.Behavior{CallId: id + "-2"})
	wg.Wait()
	if first != nil {
		t.Fatalf("first call: %v", first)
	}
	if got := svc.Attempts(id + "-2"); got != 0 {
		t.Fatalf("the second call reached the handler %d times, want 0", got)
	}
	return second
}
