package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// headerServer starts a test server that records the values of the
// incoming metadata keys of every call, in order.
func headerServer(t *testing.T, keys ...string) (*testservice.Server, func() map[string][]string) {
	t.Helper()
	var (
		mu  sync.Mutex
		got = map[string][]string{}
	)
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		mu.Lock()
		for _, k := range keys {
			got[k] = append(got[k], md.Get(k)...)
		}
		mu.Unlock()
		return handler(ctx, req)
	}
	srv := testservice.StartTB(t, testservice.WithServerOptions(grpc.ChainUnaryInterceptor(record)))
	return srv, func() map[string][]string {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[string][]string, len(got))
		for k, v := range got {
			out[k] = append([]string(nil), v...)
		}
		return out
	}
}

// unsampledTelemetry is telemetry on the SDK with a sampler that samples
// no root trace and follows the parent otherwise, spans recorded by sink.
func unsampledTelemetry(t *testing.T, spans *sink) *telemetry.Telemetry {
	t.Helper()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0))), sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tel, err := telemetry.New(telemetry.Config{TracerProvider: tp, Propagator: propagation.TraceContext{}})
	if err != nil {
		t.Fatal(err)
	}
	return tel
}

// An unsampled call still sends each attempt's trace context, with the
// sampled flag off, so that a server whose sampler follows its parent
// decides as the client did: a root call gets a trace of its own, shared
// by its attempts, and a call under an unsampled remote parent keeps the
// parent's trace id. No span is recorded.
func TestUnsampledContextPropagates(t *testing.T) {
	srv, headers := headerServer(t, "traceparent")
	spans := newSink()
	tel := unsampledTelemetry(t, spans)
	client, err := interceptors.NewClient(interceptors.Config{Default: interceptors.Policy{Retry: fastRetry(3)}, Observer: tel.ClientObserver()})
	if err != nil {
		t.Fatal(err)
	}
	conn := srv.DialTB(t, grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(client.UnaryClientInterceptor()))
	tc := testingv1.NewTestServiceClient(conn)

	// A root call retried twice: three attempts, one trace.
	if _, err := tc.Unary(ctxTimeout(t, 10*time.Second), &testingv1.UnaryRequest{Behavior: testservice.Failing("root", 2, codes.Unavailable)}); err != nil {
		t.Fatal(err)
	}
	got := headers()["traceparent"]
	if len(got) != 3 {
		t.Fatalf("traceparent headers = %q, want one per attempt (3)", got)
	}
	ids := map[string]bool{}
	for _, h := range got {
		parts := strings.Split(h, "-")
		if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 {
			t.Fatalf("traceparent %q is not W3C Trace Context", h)
		}
		if parts[3] != "00" {
			t.Errorf("traceparent %q: flags %q, want 00 (not sampled)", h, parts[3])
		}
		if parts[1] != strings.Split(got[0], "-")[1] {
			t.Errorf("attempts of one call in different traces: %q", got)
		}
		ids[parts[2]] = true
	}
	if len(ids) != 3 {
		t.Errorf("attempts share a span id: %q", got)
	}

	// A call under an unsampled remote parent keeps the parent's trace.
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		Remote:  true,
	})
	ctx := trace.ContextWithRemoteSpanContext(ctxTimeout(t, 10*time.Second), parent)
	if _, err := tc.Unary(ctx, &testingv1.UnaryRequest{}); err != nil {
		t.Fatal(err)
	}
	got = headers()["traceparent"]
	if len(got) != 4 {
		t.Fatalf("traceparent headers = %q, want 4", got)
	}
	last := strings.Split(got[3], "-")
	if last[1] != parent.TraceID().String() || last[3] != "00" || last[2] == parent.SpanID().String() {
		t.Errorf("traceparent under an unsampled parent = %q, want trace %s, a span of its own, flags 00", got[3], parent.TraceID())
	}
	if n := len(spans.Ended()); n != 0 {
		t.Errorf("%d spans recorded, want none", n)
	}
}

// The attempt's trace context replaces a traceparent already in the
// caller's outgoing metadata, whichever case its key has, and leaves the
// caller's other keys as they were.
func TestInjectKeepsCallerMetadata(t *testing.T) {
	srv, headers := headerServer(t, "traceparent", "x-user", "x-tags")
	spans := newSink()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tel, err := telemetry.New(telemetry.Config{TracerProvider: tp, Propagator: propagation.TraceContext{}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := interceptors.NewClient(interceptors.Config{Observer: tel.ClientObserver()})
	if err != nil {
		t.Fatal(err)
	}
	conn := srv.DialTB(t, grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(client.UnaryClientInterceptor()))
	tc := testingv1.NewTestServiceClient(conn)
	stale := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	cases := []struct {
		name string
		ctx  func(context.Context) context.Context
	}{
		{"no metadata", func(ctx context.Context) context.Context { return ctx }},
		{"other keys", func(ctx context.Context) context.Context {
			return metadata.AppendToOutgoingContext(metadata.NewOutgoingContext(ctx, metadata.Pairs("x-user", "ada")), "x-tags", "a", "x-tags", "b")
		}},
		{"stale traceparent", func(ctx context.Context) context.Context {
			return metadata.NewOutgoingContext(ctx, metadata.Pairs("x-user", "ada", "traceparent", stale))
		}},
		{"stale traceparent appended", func(ctx context.Context) context.Context {
			return metadata.AppendToOutgoingContext(metadata.NewOutgoingContext(ctx, metadata.Pairs("x-user", "ada")), "traceparent", stale)
		}},
		{"stale Traceparent in a raw map", func(ctx context.Context) context.Context {
			return metadata.NewOutgoingContext(ctx, metadata.MD{"x-user": {"ada"}, "Traceparent": {stale}})
		}},
	}
	for i, c := range cases {
		if _, err := tc.Unary(c.ctx(ctxTimeout(t, 10*time.Second)), &testingv1.UnaryRequest{}); err != nil {
			t.Fatal(err)
		}
		attempts := byKind(spans.wait(t, 2*(i+1)), trace.SpanKindClient, attemptName)
		sc := attempts[len(attempts)-1].SpanContext()
		want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
		got := headers()
		if tp := got["traceparent"]; len(tp) != i+1 || tp[i] != want {
			t.Errorf("%s: traceparent headers = %q, want the last one %q and one per call", c.name, tp, want)
		}
		users := 0
		for _, u := range got["x-user"] {
			if u != "ada" {
				t.Errorf("%s: x-user = %q", c.name, u)
			}
			users++
		}
		if users != i {
			t.Errorf("%s: %d x-user headers so far, want %d", c.name, users, i)
		}
	}
	if tags := headers()["x-tags"]; len(tags) != 2 || tags[0] != "a" || tags[1] != "b" {
		t.Errorf("x-tags = %q, want [a b]", tags)
	}
}

// Calls to more methods than a Telemetry keeps attribute sets for, made
// concurrently, are all counted: at quiescence the attempt counts are
// exact, no attempt is left active, and the dropped sets are counted as
// evictions of the telemetry_methods cache.
func TestManyMethodsCountedExactly(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	spans := newSink()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))), sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tel, err := telemetry.New(telemetry.Config{TracerProvider: tp, MeterProvider: mp,
		Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	client, err := interceptors.NewClient(interceptors.Config{
		Default:  interceptors.Policy{Retry: &interceptors.RetryPolicy{}, Breaker: &interceptors.BreakerPolicy{}},
		MaxKeys:  1 << 14,
		Observer: tel.ClientObserver(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ic := client.UnaryClientInterceptor()
	const (
		workers = 4
		methods = 1500 // more than the 1024 a Telemetry keeps
		rounds  = 2
	)
	ctx := ctxTimeout(t, time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				for m := range methods {
					method := fmt.Sprintf("/pkg.Service/M%d", (m+w*methods/workers+r)%methods)
					if err := ic(ctx, method, &testingv1.UnaryRequest{}, &testingv1.UnaryResponse{}, nil, fill); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if got, want := total(t, rm, telemetry.MetricAttempts), int64(workers*methods*rounds); got != want {
		t.Errorf("attempts = %d, want %d", got, want)
	}
	if got, want := total(t, rm, telemetry.MetricCallDuration), int64(workers*methods*rounds); got != want {
		t.Errorf("call durations = %d, want %d", got, want)
	}
	if got := total(t, rm, telemetry.MetricActiveAttempts); got != 0 {
		t.Errorf("active attempts at quiescence = %d, want 0", got)
	}
	if got := total(t, rm, telemetry.MetricAttempts, attribute.String(telemetry.AttrRPCMethod, "M7")); got != workers*rounds {
		t.Errorf("attempts of M7 = %d, want %d", got, workers*rounds)
	}
	if got := total(t, rm, telemetry.MetricCacheEvictions, attribute.String(telemetry.AttrCache, telemetry.CacheMethods)); got == 0 {
		t.Errorf("no eviction of the %s cache counted", telemetry.CacheMethods)
	}
}

// On no-op trace and metric providers the client hooks skip spans and
// measurements, but the logs are as on any providers.
func TestNoopProvidersStillLog(t *testing.T) {
	srv := testservice.StartTB(t)
	logs := &syncBuffer{}
	tel, err := telemetry.New(telemetry.Config{
		TracerProvider: tracenoop.NewTracerProvider(),
		MeterProvider:  metricnoop.NewMeterProvider(),
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: dropTime})),
	})
	if err != nil {
		t.Fatal(err)
	}
	client, err := interceptors.NewClient(interceptors.Config{Default: interceptors.Policy{Retry: fastRetry(3)}, Observer: tel.ClientObserver()})
	if err != nil {
		t.Fatal(err)
	}
	conn := srv.DialTB(t, grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(client.UnaryClientInterceptor()))
	if _, err := testingv1.NewTestServiceClient(conn).Unary(ctxTimeout(t, 10*time.Second), &testingv1.UnaryRequest{Behavior: testservice.Failing("once", 1, codes.Unavailable)}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`level=DEBUG msg="grpc attempt failed" method=/grpcresilience.testing.v1.TestService/Unary attempt=1 code=Unavailable`,
		`level=DEBUG msg="grpc call retried" method=/grpcresilience.testing.v1.TestService/Unary attempt=1 delay=1ms code=Unavailable`,
	}
	lines := logLines(logs)
	if len(lines) != len(want) {
		t.Fatalf("log has %d lines, want %d:\n%s", len(lines), len(want), logs)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d:\n%s\nwant it to start with\n%s", i, lines[i], w)
		}
	}
}
