// Command streaming shows retries of streaming calls through the pipeline
// of package interceptors: a server stream that fails before its first
// message is retried without the application noticing; one that fails after
// three messages is committed, so the application gets exactly those three
// and then the error; a client stream is replayed to the second attempt.
//
// It talks to the test service, served in the same process on loopback.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "streaming:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	srv, err := testservice.Start(testservice.WithTCP("127.0.0.1:0"))
	if err != nil {
		return err
	}
	defer srv.Stop()

	pipeline, err := interceptors.NewClient(interceptors.Config{Default: interceptors.Policy{
		Retry: &interceptors.RetryPolicy{
			MaxAttempts: 3,
			Backoff:     interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: 10 * time.Millisecond},
			Jitter:      interceptors.JitterNone,
		},
	}})
	if err != nil {
		return err
	}
	conn, err := srv.Dial(grpc.WithDisableRetry(), grpc.WithChainStreamInterceptor(pipeline.StreamClientInterceptor()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := testingv1.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	fmt.Fprintln(out, "1. server stream, the first attempt fails before its first message:")
	serverStream(ctx, out, client, &testingv1.Behavior{CallId: "before", FailAttempts: 1, FailAfterMessages: 0, StreamMessages: 4})
	fmt.Fprintf(out, "   server saw %d attempts\n", srv.Service().Attempts("before"))

	fmt.Fprintln(out, "2. server stream, the first attempt fails after 3 messages:")
	serverStream(ctx, out, client, &testingv1.Behavior{CallId: "after", FailAttempts: 1, FailAfterMessages: 3, StreamMessages: 4})
	fmt.Fprintf(out, "   server saw %d attempt (committed: no retry, no duplicate)\n", srv.Service().Attempts("after"))

	fmt.Fprintln(out, "3. client stream, the first attempt fails after reading 2 of 3 messages:")
	stream, err := client.ClientStream(ctx)
	if err != nil {
		return err
	}
	req := &testingv1.ClientStreamRequest{Behavior: &testingv1.Behavior{CallId: "replay", FailAttempts: 1, FailAfterMessages: 2}}
	for _, p := range []string{"a", "b", "c"} {
		req.Payload = []byte(p) // the same message, reused: the pipeline cloned each one it sent
		if err := stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   attempt %d received %q\n", resp.GetReply().GetAttempt(), resp.GetPayloads())
	return nil
}

// serverStream prints every message the application receives and how the
// stream ends.
func serverStream(ctx context.Context, out io.Writer, client testingv1.TestServiceClient, b *testingv1.Behavior) {
	stream, err := client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: b, Payload: []byte("m")})
	if err != nil {
		fmt.Fprintln(out, "   open:", status.Code(err))
		return
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			fmt.Fprintln(out, "   end: OK")
			return
		}
		if err != nil {
			fmt.Fprintln(out, "   end:", status.Code(err))
			return
		}
		fmt.Fprintf(out, "   message %d from attempt %d\n", m.GetReply().GetSequence(), m.GetReply().GetAttempt())
	}
}
