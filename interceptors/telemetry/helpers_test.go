package telemetry_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// transports are the two ways the harness serves: in memory and loopback TCP.
var transports = []struct {
	name string
	opts []testservice.Option
}{
	{"bufconn", nil},
	{"tcp", []testservice.Option{testservice.WithTCP("")}},
}

// sink records ended spans and signals each one, so that tests wait for
// the spans they expect (otelgrpc ends a server span after the client may
// already have its answer) without sleeping.
type sink struct {
	*tracetest.SpanRecorder
	ended chan struct{}
}

func newSink() *sink {
	return &sink{SpanRecorder: tracetest.NewSpanRecorder(), ended: make(chan struct{}, 1024)}
}

func (s *sink) OnEnd(sp sdktrace.ReadOnlySpan) {
	s.SpanRecorder.OnEnd(sp)
	s.ended <- struct{}{}
}

// wait returns the ended spans once there are n of them, failing the test
// after a generous bound.
func (s *sink) wait(t *testing.T, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	spans, err := s.waitFor(n)
	if err != nil {
		t.Fatal(err)
	}
	return spans
}

// waitFor returns the ended spans once there are n of them, or an error
// after 10 seconds.
func (s *sink) waitFor(n int) ([]sdktrace.ReadOnlySpan, error) {
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for len(s.Ended()) < n {
		select {
		case <-s.ended:
		case <-timer.C:
			return nil, fmt.Errorf("got %d ended spans, want %d", len(s.Ended()), n)
		}
	}
	return s.Ended(), nil
}

// waitKind waits until n ended spans are of kind k, failing the test after
// a generous bound.
func (s *sink) waitKind(t *testing.T, k trace.SpanKind, n int) {
	t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for {
		got := 0
		for _, sp := range s.Ended() {
			if sp.SpanKind() == k {
				got++
			}
		}
		if got >= n {
			return
		}
		select {
		case <-s.ended:
		case <-timer.C:
			t.Fatalf("got %d ended spans of kind %v, want %d", got, k, n)
		}
	}
}

// rig is a test server and a client connection through the pipeline with
// telemetry on SDK providers that record in memory.
type rig struct {
	spans  *sink
	reader *sdkmetric.ManualReader
	logs   *syncBuffer
	tel    *telemetry.Telemetry
	pipe   *interceptors.Client
	srv    *testservice.Server
	sp     *server.Server
	client testingv1.TestServiceClient
	target string
}

type rigConfig struct {
	policy interceptors.Policy
	// clientOTelGRPC installs otelgrpc's client stats handler as well.
	clientOTelGRPC bool
	server         server.Config
	logLevel       slog.Level
	transport      []testservice.Option
}

var tracePropagator = propagation.TraceContext{}

func newRig(t *testing.T, cfg rigConfig) *rig {
	t.Helper()
	r := &rig{spans: newSink(), reader: sdkmetric.NewManualReader(), logs: &syncBuffer{}}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	tel, err := telemetry.New(telemetry.Config{
		TracerProvider: tp,
		MeterProvider:  mp,
		Logger:         slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: cfg.logLevel, ReplaceAttr: dropTime})),
		Propagator:     tracePropagator,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.tel = tel
	scfg := cfg.server
	scfg.Observer = tel.ServerObserver()
	r.sp, err = server.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	otelOpts := []otelgrpc.Option{otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(tracePropagator), otelgrpc.WithMeterProvider(mp)}
	sopts := append([]testservice.Option{testservice.WithServerOptions(
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelOpts...)),
		grpc.ChainUnaryInterceptor(r.sp.UnaryServerInterceptor()))}, cfg.transport...)
	r.srv = testservice.StartTB(t, sopts...)
	r.pipe, err = interceptors.NewClient(interceptors.Config{Default: cfg.policy, Observer: tel.ClientObserver()})
	if err != nil {
		t.Fatal(err)
	}
	dopts := []grpc.DialOption{grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(r.pipe.UnaryClientInterceptor())}
	if cfg.clientOTelGRPC {
		dopts = append(dopts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelOpts...)))
	}
	conn := r.srv.DialTB(t, dopts...)
	r.target = conn.Target()
	r.client = testingv1.NewTestServiceClient(conn)
	return r
}

// collect reads every metric from the manual reader.
func (r *rig) collect(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm
}

// fastRetry is a retry policy with 1ms constant waits and no budget, so
// that tests count attempts exactly.
func fastRetry(attempts int) *interceptors.RetryPolicy {
	return &interceptors.RetryPolicy{
		MaxAttempts: attempts,
		Backoff:     interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: time.Millisecond},
		Jitter:      interceptors.JitterNone,
		Budget:      interceptors.NoBudget,
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// attr returns the value of key on kvs, and whether it is there.
func attr(kvs []attribute.KeyValue, key string) (attribute.Value, bool) {
	for _, kv := range kvs {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// byKind returns the spans of the given kind whose name is name.
func byKind(spans []sdktrace.ReadOnlySpan, kind trace.SpanKind, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.SpanKind() == kind && s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// childrenOf returns the spans whose parent is p.
func childrenOf(spans []sdktrace.ReadOnlySpan, p sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Parent().SpanID() == p.SpanContext().SpanID() && s.Parent().TraceID() == p.SpanContext().TraceID() {
			out = append(out, s)
		}
	}
	return out
}

// events returns the names of sp's events.
func events(sp sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, e := range sp.Events() {
		out = append(out, e.Name)
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a slog
// handler.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// dropTime removes the time from log records, for comparisons.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// hold starts a call that sleeps in the server and returns once the server
// has it. The returned func cancels the call and waits for it to return;
// the test's cleanup calls it too.
func (r *rig) hold(t *testing.T, ctx context.Context) (release func()) {
	t.Helper()
	holdCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = r.client.Unary(holdCtx, &testingv1.UnaryRequest{Behavior: testservice.Sleeping("hold", time.Minute, 0)})
	}()
	release = func() {
		cancel()
		<-done
	}
	t.Cleanup(release)
	if err := r.srv.Service().WaitAttempts(ctx, "hold", 1); err != nil {
		t.Fatal(err)
	}
	return release
}
