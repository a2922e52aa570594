// Command grpcserver is a gRPC server protected by the server pipeline of
// package interceptors/server: a bulkhead that sheds the calls it has no
// slot for with RESOURCE_EXHAUSTED and a pushback the clients can honour,
// deadline enforcement that rejects calls with too little time left before
// they run, and a default deadline for calls that carry none.
//
// It serves the test service in the same process on loopback, and calls it
// with a plain client and with a resilient one that honours the pushback.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "grpcserver:", err)
		os.Exit(1)
	}
}

// behaviorOf returns the behavior of a test service request.
func behaviorOf(req any) *testingv1.Behavior {
	if r, ok := req.(interface{ GetBehavior() *testingv1.Behavior }); ok {
		return r.GetBehavior()
	}
	return nil
}

func run(out io.Writer) error {
	p, err := server.New(server.Config{
		// Calls that arrive with less than a second left are rejected
		// before they run; calls without a deadline get 5s.
		Deadline: server.DeadlineConfig{MinRemaining: time.Second, Default: 5 * time.Second},
		// One call at a time, to make shedding easy to see; a shed call is
		// asked to come back in 250ms.
		Bulkhead: server.BulkheadConfig{Limit: 1, PushbackDelay: 250 * time.Millisecond},
		Observer: server.Observer{OnEvent: func(ctx context.Context, e server.Event) {
			var id string
			if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("call-id")) > 0 {
				id = md.Get("call-id")[0]
			}
			switch e.Kind {
			case server.EventDefaultDeadline:
				fmt.Fprintf(out, "  server: call %q has no deadline; it gets %v\n", id, e.Delay)
			case server.EventShed:
				fmt.Fprintf(out, "  server: call %q shed with %s, pushback %v\n", id, e.Code, e.Delay)
			case server.EventDeadlineRejected:
				fmt.Fprintf(out, "  server: call %q rejected with %s: less than a second left\n", id, e.Code)
			}
		}},
	})
	if err != nil {
		return err
	}
	// slowEnded is closed once the slow call is over on the server, by an
	// interceptor outside the pipeline: by then its bulkhead slot is free.
	slowEnded := make(chan struct{})
	signalEnd := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if behaviorOf(req).GetCallId() == "slow" {
			close(slowEnded)
		}
		return resp, err
	}
	srv, err := testservice.Start(testservice.WithTCP("127.0.0.1:0"), testservice.WithServerOptions(
		grpc.ChainUnaryInterceptor(signalEnd, p.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(p.StreamServerInterceptor()),
	))
	if err != nil {
		return err
	}
	defer srv.Stop()
	conn, err := srv.Dial(grpc.WithDisableRetry())
	if err != nil {
		return err
	}
	defer conn.Close()
	plain := testingv1.NewTestServiceClient(conn)
	// withID names a call in its metadata too, so that the server's
	// observer can name calls that never reach the handler.
	withID := func(ctx context.Context, id string) (context.Context, *testingv1.Behavior) {
		return metadata.AppendToOutgoingContext(ctx, "call-id", id), &testingv1.Behavior{CallId: id}
	}

	fmt.Fprintln(out, "1. A slow call takes the only slot")
	slowCtx, cancelSlow := context.WithCancel(context.Background())
	defer cancelSlow()
	slowDone := make(chan error, 1)
	go func() {
		ctx, b := withID(slowCtx, "slow")
		b.Sleep = durationpb.New(time.Hour)
		_, err := plain.Unary(ctx, &testingv1.UnaryRequest{Behavior: b})
		slowDone <- err
	}()
	if err := srv.Service().WaitAttempts(context.Background(), "slow", 1); err != nil {
		return err
	}

	fmt.Fprintln(out, "2. The next call is shed at once, with pushback")
	ctx, b := withID(context.Background(), "shed")
	var trailer metadata.MD
	_, err = plain.Unary(ctx, &testingv1.UnaryRequest{Behavior: b}, grpc.Trailer(&trailer))
	st := status.Convert(err)
	fmt.Fprintf(out, "  client: %s, %s: %s\n", st.Code(), classify.PushbackTrailer, strings.Join(trailer.Get(classify.PushbackTrailer), ","))
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			fmt.Fprintf(out, "  client: google.rpc.RetryInfo retry_delay %v\n", ri.GetRetryDelay().AsDuration())
		}
	}
	fmt.Fprintf(out, "  the handler ran for it %d times\n", srv.Service().Attempts("shed"))

	fmt.Fprintln(out, "3. A resilient client is shed too, waits as asked, and gets in once the slot is free")
	pipeline, err := interceptors.NewClient(interceptors.Config{
		Default: interceptors.Policy{Retry: &interceptors.RetryPolicy{MaxAttempts: 3}},
		Observer: releaseOnRetry(out, func() error {
			// The slow call gives its slot back while the retry waits.
			cancelSlow()
			if err := <-slowDone; status.Code(err) != codes.Canceled {
				return fmt.Errorf("slow call: %v", err)
			}
			<-slowEnded
			fmt.Fprintln(out, "  the slow call is cancelled; its slot is free")
			return nil
		}),
	})
	if err != nil {
		return err
	}
	rconn, err := srv.Dial(grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(pipeline.UnaryClientInterceptor()))
	if err != nil {
		return err
	}
	defer rconn.Close()
	resilient := testingv1.NewTestServiceClient(rconn)
	ctx, b = withID(context.Background(), "patient")
	resp, err := resilient.Unary(ctx, &testingv1.UnaryRequest{Behavior: b})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  client: answered; the answering attempt carried grpc-previous-rpc-attempts: %s\n", resp.GetReply().GetPreviousRpcAttempts())

	fmt.Fprintln(out, "4. A call with 300ms left is rejected before it runs")
	ctx, b = withID(context.Background(), "late")
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = plain.Unary(ctx, &testingv1.UnaryRequest{Behavior: b})
	fmt.Fprintf(out, "  client: %s; the handler ran for it %d times\n", status.Code(err), srv.Service().Attempts("late"))
	return nil
}

// releaseOnRetry returns an Observer that prints the retry the pipeline
// decides and, the first time, calls release to free the server's slot
// before the retry starts.
func releaseOnRetry(out io.Writer, release func() error) interceptors.Observer {
	return interceptors.Observer{OnEvent: func(_ context.Context, e interceptors.Event) {
		if e.Kind != interceptors.EventRetry {
			return
		}
		fmt.Fprintf(out, "  client: attempt %d got %s; retry in %v, as the server asked\n", e.Attempt, status.Code(e.Err), e.Delay)
		if e.Attempt == 1 {
			if err := release(); err != nil {
				fmt.Fprintln(out, "  error:", err)
			}
		}
	}}
}
