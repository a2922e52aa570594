// Command tracing shows what a retried call looks like as a trace: one span
// for the call, a child span per attempt, and the server's span under the
// attempt that reached it (the trace context is injected per attempt).
//
// By default it prints the span tree it recorded in process. With -otlp
// host:port it also exports the spans over OTLP/gRPC, for instance to the
// Jaeger that `make jaeger` starts on 127.0.0.1:4317, and prints the
// trace id to look up.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

func main() {
	otlp := flag.String("otlp", "", "also export the spans to this OTLP/gRPC endpoint (host:port, plaintext), e.g. 127.0.0.1:4317")
	flag.Parse()
	if err := run(context.Background(), *otlp, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tracing:", err)
		os.Exit(1)
	}
}

// collector keeps every span that ends and tells when n have ended.
type collector struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
	more  chan struct{}
}

func (c *collector) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (c *collector) Shutdown(context.Context) error                  { return nil }
func (c *collector) ForceFlush(context.Context) error                { return nil }

func (c *collector) OnEnd(s sdktrace.ReadOnlySpan) {
	c.mu.Lock()
	c.spans = append(c.spans, s)
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
}

// wait returns the spans once n have ended, or an error after a while.
func (c *collector) wait(n int) ([]sdktrace.ReadOnlySpan, error) {
	timeout := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		spans := slices.Clone(c.spans)
		c.mu.Unlock()
		if len(spans) >= n {
			return spans, nil
		}
		select {
		case <-c.more:
		case <-timeout:
			return nil, fmt.Errorf("%d spans ended, want %d", len(spans), n)
		}
	}
}

func run(ctx context.Context, otlp string, out io.Writer) error {
	col := &collector{more: make(chan struct{}, 1)}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSpanProcessor(col),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "grpc-resilience-tracing-example"))),
	}
	if otlp != "" {
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(otlp), otlptracegrpc.WithInsecure())
		if err != nil {
			return err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	defer func() { _ = tp.Shutdown(context.Background()) }() // flushes the exporter
	prop := propagation.TraceContext{}

	// The server: otelgrpc's stats handler makes its spans, as children of
	// the trace context each attempt carries.
	srv, err := testservice.Start(testservice.WithTCP("127.0.0.1:0"), testservice.WithServerOptions(grpc.StatsHandler(
		otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop)))))
	if err != nil {
		return err
	}
	defer srv.Stop()

	// The client: the pipeline with the telemetry observer.
	tel, err := telemetry.New(telemetry.Config{TracerProvider: tp, Propagator: prop})
	if err != nil {
		return err
	}
	client, err := interceptors.NewClient(interceptors.Config{
		Default: interceptors.Policy{Retry: &interceptors.RetryPolicy{
			MaxAttempts: 3,
			Backoff:     interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: 5 * time.Millisecond},
			Jitter:      interceptors.JitterNone,
		}},
		Observer: tel.ClientObserver(),
	})
	if err != nil {
		return err
	}
	conn, err := srv.Dial(grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(client.UnaryClientInterceptor()))
	if err != nil {
		return err
	}
	defer conn.Close()

	// The first two attempts fail with UNAVAILABLE, the third answers.
	callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := testingv1.NewTestServiceClient(conn).Unary(callCtx, &testingv1.UnaryRequest{
		Behavior: &testingv1.Behavior{CallId: "traced", FailAttempts: 2},
	}); err != nil {
		return err
	}
	// 1 call span, 3 attempt spans, 3 server spans; the server ends its
	// spans just after answering.
	spans, err := col.wait(7)
	if err != nil {
		return err
	}
	printTree(out, spans)
	if otlp != "" {
		fmt.Fprintf(out, "exported to %s: trace %s\n", otlp, spans[0].SpanContext().TraceID())
	}
	return nil
}

// printTree prints the spans in start order, indented under their parents.
func printTree(out io.Writer, spans []sdktrace.ReadOnlySpan) {
	slices.SortFunc(spans, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	depth := map[string]int{}
	for _, s := range spans {
		d := 0
		if p := s.Parent(); p.IsValid() {
			d = depth[p.SpanID().String()] + 1
		}
		depth[s.SpanContext().SpanID().String()] = d
		fmt.Fprintf(out, "%*s%s [%s", 2*d, "", s.Name(), s.SpanKind())
		for _, kv := range s.Attributes() {
			switch kv.Key {
			case telemetry.AttrAttempt, "rpc.grpc.status_code":
				fmt.Fprintf(out, " %s=%s", kv.Key, kv.Value.String())
			}
		}
		fmt.Fprintf(out, "] %s\n", s.Status().Code)
	}
}
