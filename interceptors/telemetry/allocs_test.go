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

// TestAllocations bounds what telemetry allocates per unary call whose
// first attempt succeeds, over the full pipeline and an in-process
// invoker, beyond the same pipeline without an observer: nothing on no-op
// providers, and on the SDK with an unsampled trace only what the SDK and
// gRPC's metadata force: per span the SDK's span and the context holding
// it, plus our state; for the attempt the traceparent header's string and
// gRPC's outgoing metadata (4).
func TestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0))))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	cases := []struct {
		name  string
		cfg   telemetry.Config
		extra float64
	}{
		{"noop", telemetry.Config{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider(), Logger: quiet}, 0},
		{"globals-unset", telemetry.Config{Logger: quiet}, 0},
		{"sdk-unsampled", telemetry.Config{TracerProvider: tp, MeterProvider: mp, Logger: quiet}, 3 + 3 + 1 + 4},
	}
	ctx := ctxTimeout(t, time.Hour)
	allocs := func(ic grpc.UnaryClientInterceptor) float64 {
		req, reply := &testingv1.UnaryRequest{}, &testingv1.UnaryResponse{}
		return testing.AllocsPerRun(200, func() {
			if err := ic(ctx, testingv1.TestService_Unary_FullMethodName, req, reply, nil, fill); err != nil {
				t.Fatal(err)
			}
		})
	}
	policy := interceptors.Policy{Retry: &interceptors.RetryPolicy{}, Breaker: &interceptors.BreakerPolicy{}, Bulkhead: &interceptors.BulkheadPolicy{Limit: 1 << 20}}
	bare, err := interceptors.NewClient(interceptors.Config{Default: policy})
	if err != nil {
		t.Fatal(err)
	}
	base := allocs(bare.UnaryClientInterceptor())
	for _, c := range cases {
		tel, err := telemetry.New(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		client, err := interceptors.NewClient(interceptors.Config{Default: policy, Observer: tel.ClientObserver()})
		if err != nil {
			t.Fatal(err)
		}
		if got := allocs(client.UnaryClientInterceptor()) - base; got > c.extra {
			t.Errorf("%s: %.1f allocations per call beyond the pipeline's, want at most %.0f", c.name, got, c.extra)
		}
	}
}
