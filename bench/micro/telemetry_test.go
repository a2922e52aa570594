package micro

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// telemetryVariant is the full unary client pipeline with one telemetry
// set-up.
type telemetryVariant struct {
	name string
	ic   grpc.UnaryClientInterceptor
}

// telemetryVariants returns, in this order, the full unary client pipeline (retry with the
// default budget, breaker and client bulkhead, as in pipelines) four ways:
// without an observer; with telemetry on the no-op trace and metric
// providers; with the OpenTelemetry SDK as an application configures it, a
// tracer provider sampling 1% of the root traces
// (ParentBased(TraceIDRatioBased(0.01))) and a meter provider with a
// manual reader; and with the SDK sampling every trace, for scale. The
// logger drops everything below Warn, as in production. The providers are
// shut down when tb ends.
func telemetryVariants(tb testing.TB) []telemetryVariant {
	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sdk := func(s sdktrace.Sampler) telemetry.Config {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(s))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		tb.Cleanup(func() {
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		})
		return telemetry.Config{TracerProvider: tp, MeterProvider: mp, Logger: quiet}
	}
	configs := []struct {
		name string
		cfg  *telemetry.Config // nil: no observer
	}{
		{"none", nil},
		{"noop", &telemetry.Config{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider(), Logger: quiet}},
		{"otel-1pct", new(sdk(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))))},
		{"otel-always", new(sdk(sdktrace.AlwaysSample()))},
	}
	var out []telemetryVariant
	for _, c := range configs {
		cfg := interceptors.Config{Default: interceptors.Policy{
			Retry:    &interceptors.RetryPolicy{},
			Breaker:  &interceptors.BreakerPolicy{},
			Bulkhead: &interceptors.BulkheadPolicy{Limit: 1 << 20},
		}}
		if c.cfg != nil {
			tel, err := telemetry.New(*c.cfg)
			if err != nil {
				tb.Fatal(err)
			}
			cfg.Observer = tel.ClientObserver()
		}
		client, err := interceptors.NewClient(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, telemetryVariant{c.name, client.UnaryClientInterceptor()})
	}
	return out
}

// againstNoop runs b.N calls of call with inst, timed, in 16 chunks, each
// after as many calls with noop, untimed, and reports the ratio of the two
// times as "x-noop": the machine's noise hits both alike, which makes the
// ratio steadier than one of ns/op across sub-benchmarks.
func againstNoop[T any](b *testing.B, call func(T), inst, noop T) {
	var spent, ref time.Duration
	chunk := max(b.N/16, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		n := min(chunk, b.N-done)
		b.StopTimer()
		start := time.Now()
		for range n {
			call(noop)
		}
		ref += time.Since(start)
		b.StartTimer()
		start = time.Now()
		for range n {
			call(inst)
		}
		spent += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(spent)/float64(ref), "x-noop")
}

// BenchmarkTelemetry measures the full unary client pipeline over the
// in-process invoker, serial, with each telemetry set-up of
// telemetryVariants: otel-1pct's ns/op over noop's is what an application
// pays for the real SDK at a 1% sampling rate, and noop's over none's is
// the cost of the observer hooks themselves. Each sub-benchmark also
// reports its time over noop's, measured in alternating chunks
// (againstNoop). The caller's context carries no span, so every call is a
// root whose sampling the sampler decides.
func BenchmarkTelemetry(b *testing.B) {
	ctx := callerContext(b)
	req := &testingv1.UnaryRequest{}
	var reply testingv1.UnaryResponse
	call := func(ic grpc.UnaryClientInterceptor) {
		if err := ic(ctx, testingv1.TestService_Unary_FullMethodName, req, &reply, nil, fill); err != nil {
			b.Fatal(err)
		}
	}
	variants := telemetryVariants(b)
	noop := variants[1].ic
	for _, v := range variants {
		call(v.ic) // builds the key's state
		b.Run(v.name, func(b *testing.B) { againstNoop(b, call, v.ic, noop) })
	}
}

// BenchmarkTelemetryLoopback measures the same four set-ups on a real
// unary call to a testservice server on 127.0.0.1, serial: the telemetry's
// cost next to a round trip, and its allocations beyond gRPC's own, with
// the time over noop's as in BenchmarkTelemetry.
func BenchmarkTelemetryLoopback(b *testing.B) {
	srv := testservice.StartTB(b, testservice.WithTCP(""))
	ctx := callerContext(b)
	req := &testingv1.IdempotentUnaryRequest{Payload: []byte("ping")}
	call := func(c testingv1.TestServiceClient) {
		if _, err := c.IdempotentUnary(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	variants := telemetryVariants(b)
	clients := make([]testingv1.TestServiceClient, len(variants))
	for i, v := range variants {
		clients[i] = srv.Client(b, grpc.WithDisableRetry(), grpc.WithUnaryInterceptor(v.ic))
		call(clients[i]) // connect first
	}
	noop := clients[1]
	for i, v := range variants {
		b.Run(v.name, func(b *testing.B) { againstNoop(b, call, clients[i], noop) })
	}
}
