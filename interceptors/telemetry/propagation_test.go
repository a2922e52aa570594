package telemetry_test

import (
	"context"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// With neither Config.Propagator nor a global propagator set (this test
// binary never sets one), each attempt still sends a W3C traceparent that
// names its attempt span, so that a server sees the caller's trace without
// further set-up.
func TestTraceparentSentWithoutPropagator(t *testing.T) {
	var (
		mu      sync.Mutex
		headers []string
	)
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		mu.Lock()
		headers = append(headers, md.Get("traceparent")...)
		mu.Unlock()
		return handler(ctx, req)
	}
	srv := testservice.StartTB(t, testservice.WithServerOptions(grpc.ChainUnaryInterceptor(record)))

	spans := newSink()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tel, err := telemetry.New(telemetry.Config{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	client, err := interceptors.NewClient(interceptors.Config{Observer: tel.ClientObserver()})
	if err != nil {
		t.Fatal(err)
	}
	conn := srv.DialTB(t, grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(client.UnaryClientInterceptor()))
	if _, err := testingv1.NewTestServiceClient(conn).Unary(ctxTimeout(t, 10*time.Second), &testingv1.UnaryRequest{}); err != nil {
		t.Fatal(err)
	}

	attempts := byKind(spans.wait(t, 2), trace.SpanKindClient, attemptName)
	if len(attempts) != 1 {
		t.Fatalf("got %d attempt spans, want 1", len(attempts))
	}
	sc := attempts[0].SpanContext()
	want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
	mu.Lock()
	defer mu.Unlock()
	if len(headers) != 1 || headers[0] != want {
		t.Errorf("traceparent at the server = %q, want [%q] (the attempt span's)", headers, want)
	}
}
