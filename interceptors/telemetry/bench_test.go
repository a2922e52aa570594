package telemetry_test

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
)

// fill is an in-process invoker: it answers at once by filling the reply,
// so that the benchmark measures the pipeline and its telemetry alone.
func fill(_ context.Context, _ string, _, reply any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
	reply.(*testingv1.UnaryResponse).Reply = &testingv1.Reply{}
	return nil
}

// benchPolicy sets the patterns that run on a unary call's success path.
func benchPolicy() interceptors.Policy {
	return interceptors.Policy{
		Retry:    fastRetry(3),
		Breaker:  &interceptors.BreakerPolicy{},
		Bulkhead: &interceptors.BulkheadPolicy{Limit: 1 << 20},
	}
}

// BenchmarkTelemetry measures a unary call whose first attempt succeeds,
// through the whole client pipeline over an in-process invoker, with
// telemetry on several providers: no-op ones, the unset globals, and the
// SDK as an application configures it, sampling 1% of the root traces
// (ParentBased(TraceIDRatioBased(0.01))) or every trace, with a manual
// metric reader. Each sub-benchmark also times the same number of calls
// through the pipeline without an observer and through the pipeline with
// telemetry on no-op providers, in alternating chunks, and reports the
// ratios as "x-bare" and "x-noop" (1.0 means no overhead): alternating
// makes the machine's noise hit all three alike.
func BenchmarkTelemetry(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sdk := func(s sdktrace.Sampler) *telemetry.Config {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(s))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() {
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		})
		return &telemetry.Config{TracerProvider: tp, MeterProvider: mp, Logger: quiet}
	}
	noopConfig := &telemetry.Config{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider(), Logger: quiet}
	variants := []struct {
		name string
		opts *telemetry.Config // nil: no observer
	}{
		{"no-observer", nil},
		{"noop-providers", noopConfig},
		{"otel-globals-unset", &telemetry.Config{Logger: quiet}},
		{"sdk-1pct", sdk(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01)))},
		{"sdk", sdk(sdktrace.AlwaysSample())},
	}
	bare := pipeline(b, nil)
	noop := pipeline(b, noopConfig)
	req := &testingv1.UnaryRequest{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	call := func(b *testing.B, ic grpc.UnaryClientInterceptor) {
		var reply testingv1.UnaryResponse
		if err := ic(ctx, testingv1.TestService_Unary_FullMethodName, req, &reply, nil, fill); err != nil {
			b.Fatal(err)
		}
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			ic := pipeline(b, v.opts)
			call(b, ic) // builds the method's state and attribute sets
			call(b, bare)
			call(b, noop)
			var base, noops, inst time.Duration
			chunk := max(b.N/16, 1)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += chunk {
				n := min(chunk, b.N-done)
				b.StopTimer()
				start := time.Now()
				for range n {
					call(b, bare)
				}
				base += time.Since(start)
				start = time.Now()
				for range n {
					call(b, noop)
				}
				noops += time.Since(start)
				b.StartTimer()
				start = time.Now()
				for range n {
					call(b, ic)
				}
				inst += time.Since(start)
			}
			b.StopTimer()
			b.ReportMetric(float64(inst)/float64(base), "x-bare")
			b.ReportMetric(float64(inst)/float64(noops), "x-noop")
		})
	}
}

// pipeline returns the client pipeline's interceptor, with telemetry on
// opts unless opts is nil.
func pipeline(b *testing.B, opts *telemetry.Config) grpc.UnaryClientInterceptor {
	cfg := interceptors.Config{Default: benchPolicy()}
	if opts != nil {
		tel, err := telemetry.New(*opts)
		if err != nil {
			b.Fatal(err)
		}
		cfg.Observer = tel.ClientObserver()
	}
	c, err := interceptors.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return c.UnaryClientInterceptor()
}
