// Command config runs the test service and a client with the policies of a
// YAML file: it prints the effective policy per method, shows calls that
// behave as the file says, and shows how an invalid file is rejected.
package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors/config"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

//go:embed policies.yaml
var policies []byte

//go:embed bad.yaml
var bad []byte

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	cfg, err := config.Parse(policies, config.FormatYAML)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "policies.yaml:")
	if err := cfg.WriteTable(out); err != nil {
		return err
	}

	sopts, err := cfg.ServerOptions()
	if err != nil {
		return err
	}
	dopts, err := cfg.DialOptions()
	if err != nil {
		return err
	}
	srv, err := testservice.Start(testservice.WithTCP("127.0.0.1:0"), testservice.WithServerOptions(sopts...))
	if err != nil {
		return err
	}
	defer srv.Stop()
	conn, err := srv.Dial(dopts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := testingv1.NewTestServiceClient(conn)
	ctx := context.Background()

	fmt.Fprintln(out)
	// Unary: up to 4 attempts, so 2 failures are survived (and the
	// success resets the breaker's count of failures in a row).
	resp, err := client.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "write", FailAttempts: 2}})
	fmt.Fprintf(out, "Unary failing 2 times: answered by attempt %d, err %v\n", resp.GetReply().GetAttempt(), err)
	// Query: the default's 3 attempts are not enough for 3 failures.
	_, err = client.Query(ctx, &testingv1.QueryRequest{Behavior: &testingv1.Behavior{CallId: "read", FailAttempts: 3}})
	fmt.Fprintf(out, "Query failing 3 times: %s after %d attempts\n", status.Code(err), srv.Service().Attempts("read"))
	// Unary failing with INTERNAL, which is not retried: the third
	// failure in a row opens the breaker, and the fourth call fails fast.
	down := &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "down", FailAttempts: -1, FailCode: uint32(codes.Internal)}}
	for range 4 {
		_, err = client.Unary(ctx, down)
	}
	fmt.Fprintf(out, "Unary failing for good, 4 calls: last %s (circuit open: %v), server saw %d attempts\n",
		status.Code(err), errors.Is(err, resilience.ErrCircuitOpen), srv.Service().Attempts("down"))

	fmt.Fprintln(out)
	fmt.Fprintln(out, "bad.yaml:")
	_, err = config.Parse(bad, config.FormatYAML)
	fmt.Fprintln(out, err)
	return nil
}
