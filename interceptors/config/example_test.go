package config_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"

	"github.com/engineeringlabs/grpc-resilience/interceptors/config"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// Load a file, then dial and serve with the options it gives: Unary is
// retried up to 4 times on UNAVAILABLE, as the file says.
func Example() {
	cfg, err := config.Load("testdata/example.yaml")
	if err != nil {
		panic(err)
	}
	sopts, err := cfg.ServerOptions()
	if err != nil {
		panic(err)
	}
	dopts, err := cfg.DialOptions()
	if err != nil {
		panic(err)
	}
	srv, err := testservice.Start(testservice.WithServerOptions(sopts...))
	if err != nil {
		panic(err)
	}
	defer srv.Stop()
	conn, err := srv.Dial(dopts...)
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	resp, err := testingv1.NewTestServiceClient(conn).Unary(context.Background(), &testingv1.UnaryRequest{
		Behavior: &testingv1.Behavior{CallId: "c1", FailAttempts: 3, FailCode: uint32(codes.Unavailable)},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("answered by attempt", resp.GetReply().GetAttempt())
	// Output:
	// answered by attempt 4
}

// Every problem of a file at once, each with its field path and value.
func ExampleParse() {
	_, err := config.Parse([]byte(`
method_policies:
  - name: [{service: pkg.Svc}]
    retry: {max_attempts: 0, attempt_timeout: -1s}
    bulkhead: {limit: 0}
    timeot: 1s
`), config.FormatYAML)
	fmt.Println(err)

	_, err = config.Parse([]byte(`
method_policies:
  - name: [{service: pkg.Svc}]
    retry: {max_attempts: 0, attempt_timeout: -1s}
    bulkhead: {limit: 0}
`), config.FormatYAML)
	var cerr *config.Error
	if errors.As(err, &cerr) {
		for _, p := range cerr.Problems {
			fmt.Println(p.Path)
		}
	}
	// Output:
	// config: method_policies[0].timeot: unknown field, did you mean "timeout"?
	// method_policies[0].retry.max_attempts
	// method_policies[0].retry.attempt_timeout
	// method_policies[0].bulkhead.limit
}

// Import the service config a client already has; Notes says what was
// ignored or clamped.
func ExampleImportServiceConfig() {
	cfg, err := config.ImportServiceConfig([]byte(`{
	  "methodConfig": [{
	    "name": [{"service": "pkg.Svc"}],
	    "waitForReady": true,
	    "retryPolicy": {
	      "maxAttempts": 6, "initialBackoff": "0.1s", "maxBackoff": "1s",
	      "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]
	    }
	  }],
	  "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}
	}`))
	if err != nil {
		panic(err)
	}
	for _, n := range cfg.Notes() {
		fmt.Println(n)
	}
	if err := cfg.WriteTable(os.Stdout); err != nil {
		panic(err)
	}
	// Output:
	// methodConfig[0].waitForReady: ignored: not a resilience setting; keep it in the service config
	// methodConfig[0].retryPolicy.maxAttempts: 6 clamped to 5, as gRPC does
	// NAME       PATTERN  ATTEMPTS  BACKOFF                                ATTEMPT TIMEOUT  TIMEOUT  BREAKER  RATE LIMIT  BULKHEAD  IDEMPOTENT
	// pkg.Svc/*  retry    5         exponential 100ms..1s x2, full jitter  -                -        -        -           -         descriptor
	//
	// target budget: token_bucket of 10, 0.1 per success
	// server: reject expired deadlines
}

// Swap a new configuration in while calls run: the pipeline of a policy
// that did not change keeps its breakers.
func ExampleReloader() {
	v1, err := config.Parse([]byte(`{"method_policies": [{"name": [{}], "breaker": {"failure_threshold": 1}}]}`), config.FormatJSON)
	if err != nil {
		panic(err)
	}
	r, err := config.NewReloader(config.ReloaderConfig{Config: v1})
	if err != nil {
		panic(err)
	}
	srv, err := testservice.Start(testservice.WithServerOptions(r.ServerOptions()...))
	if err != nil {
		panic(err)
	}
	defer srv.Stop()
	conn, err := srv.Dial(r.DialOptions()...)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	client := testingv1.NewTestServiceClient(conn)
	fail := &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{FailAttempts: -1, FailCode: uint32(codes.Internal)}}
	_, _ = client.Unary(context.Background(), fail) // opens the breaker

	// The same policy, now also with a timeout for Query.
	v2, err := config.Parse([]byte(`{"method_policies": [
	  {"name": [{}], "breaker": {"failure_threshold": 1}},
	  {"name": [{"service": "grpcresilience.testing.v1.TestService", "method": "Query"}], "timeout": "1s"}]}`), config.FormatJSON)
	if err != nil {
		panic(err)
	}
	if err := r.Update(v2); err != nil {
		panic(err)
	}
	_, err = client.Unary(context.Background(), fail)
	fmt.Println(status.Code(err), errors.Is(err, resilience.ErrCircuitOpen))
	// Output:
	// Unavailable true
}
