package main

import (
	"context"
	"errors"
	"log/slog"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	grpcstats "google.golang.org/grpc/stats"

	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
)

// serviceName is the service.name of the demo's spans.
const serviceName = "grpc-resilience-demo"

// tracing exports the resilient client's call and attempt spans, and the
// server spans nested under the attempts, to an OTLP endpoint.
type tracing struct {
	provider  *sdktrace.TracerProvider
	telemetry *telemetry.Telemetry
	prop      propagation.TextMapPropagator
}

// startTracing sets up an SDK tracer provider that batches spans to the
// OTLP gRPC endpoint (host:port, plaintext, as a local Jaeger or collector
// listens on 4317) and the telemetry of the pipelines on top of it.
func startTracing(ctx context.Context, endpoint string) (*tracing, error) {
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", serviceName))),
	)
	t := &tracing{provider: tp, prop: propagation.TraceContext{}}
	t.telemetry, err = telemetry.New(telemetry.Config{
		TracerProvider: tp,
		Propagator:     t.prop,
		// The live view is the demo's output; the resilience events go to
		// the spans only.
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, errors.Join(err, tp.Shutdown(ctx))
	}
	return t, nil
}

// serverHandler makes the server spans, as children of the attempt spans
// whose trace context each attempt carries.
func (t *tracing) serverHandler() grpcstats.Handler {
	return otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(t.provider), otelgrpc.WithPropagators(t.prop))
}

// shutdown flushes the spans still batched and stops the exporter.
func (t *tracing) shutdown(ctx context.Context) error {
	return t.provider.Shutdown(ctx)
}

// traceID returns the trace id of the span in ctx, in hex.
func traceID(ctx context.Context) (string, bool) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return "", false
	}
	return sc.TraceID().String(), true
}
