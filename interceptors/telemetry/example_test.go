package telemetry_test

import (
	"context"
	"fmt"
	"log"
	"slices"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// Example traces a call whose first attempt fails: the call span has two
// attempt spans, and the server span of each attempt (made by otelgrpc's
// server stats handler) is the attempt's child.
func Example() {
	rec := newSink() // a tracetest.SpanRecorder that also signals each ended span
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	prop := propagation.TraceContext{}

	srv, err := testservice.Start(testservice.WithServerOptions(grpc.StatsHandler(
		otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop)))))
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop()

	tel, err := telemetry.New(telemetry.Config{TracerProvider: tp, Propagator: prop})
	if err != nil {
		log.Fatal(err)
	}
	client, err := interceptors.NewClient(interceptors.Config{
		Default: interceptors.Policy{Retry: &interceptors.RetryPolicy{
			MaxAttempts: 3,
			Backoff:     interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: time.Millisecond},
			Jitter:      interceptors.JitterNone,
		}},
		Observer: tel.ClientObserver(),
	})
	if err != nil {
		log.Fatal(err)
	}
	conn, err := srv.Dial(grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(client.UnaryClientInterceptor()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := testingv1.NewTestServiceClient(conn).Unary(ctx, &testingv1.UnaryRequest{
		Behavior: &testingv1.Behavior{CallId: "example", FailAttempts: 1},
	}); err != nil {
		log.Fatal(err)
	}
	spans, err := rec.waitFor(5) // the server ends its spans just after answering
	if err != nil {
		log.Fatal(err)
	}
	slices.SortFunc(spans, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	depth := map[string]int{}
	for _, s := range spans {
		d := 0
		if p := s.Parent(); p.IsValid() {
			d = depth[p.SpanID().String()] + 1
		}
		depth[s.SpanContext().SpanID().String()] = d
		n, _ := attr(s.Attributes(), telemetry.AttrAttempt)
		fmt.Printf("%*s%s (%s", 2*d, "", s.Name(), s.SpanKind())
		if n.AsInt64() > 0 {
			fmt.Printf(", attempt %d", n.AsInt64())
		}
		fmt.Printf(", %s)\n", s.Status().Code)
	}
	// Output:
	// Sent.grpcresilience.testing.v1.TestService.Unary (client, Unset)
	//   Attempt.grpcresilience.testing.v1.TestService.Unary (client, attempt 1, Error)
	//     grpcresilience.testing.v1.TestService/Unary (server, Error)
	//   Attempt.grpcresilience.testing.v1.TestService.Unary (client, attempt 2, Unset)
	//     grpcresilience.testing.v1.TestService/Unary (server, Unset)
}
