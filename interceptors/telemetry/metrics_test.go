package telemetry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// find returns the metric called name.
func find(t *testing.T, rm metricdata.ResourceMetrics, name string) metricdata.Metrics {
	t.Helper()
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != telemetry.ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m
			}
		}
	}
	t.Fatalf("no metric %s", name)
	return metricdata.Metrics{}
}

// matches reports whether set holds every attribute of want.
func matches(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// total adds up the data points of an integer sum or gauge, or the counts of
// a histogram, whose attributes include want.
func total(t *testing.T, rm metricdata.ResourceMetrics, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	var n int64
	switch d := find(t, rm, name).Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			if matches(p.Attributes, want) {
				n += p.Value
			}
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			if matches(p.Attributes, want) {
				n += p.Value
			}
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			if matches(p.Attributes, want) {
				n += int64(p.Count)
			}
		}
	default:
		t.Fatalf("metric %s has data of type %T", name, d)
	}
	return n
}

var (
	unaryMethod = attribute.String(telemetry.AttrRPCMethod, "Unary")
	service     = attribute.String(telemetry.AttrRPCService, "grpcresilience.testing.v1.TestService")
)

func code(c codes.Code) attribute.KeyValue { return attribute.Int(telemetry.AttrRPCStatusCode, int(c)) }

// TestMetricsScripted runs a scripted scenario and checks every client
// instrument's value exactly: a call that succeeds on its third attempt, a
// call that fails with a non-retryable code, and a call whose three
// failures open the breaker so that its fourth attempt is rejected.
func TestMetricsScripted(t *testing.T) {
	r := newRig(t, rigConfig{policy: interceptors.Policy{
		Retry:   fastRetry(3),
		Breaker: &interceptors.BreakerPolicy{FailureThreshold: 3, OpenDuration: time.Hour},
	}})
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := r.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Failing("a", 2, codes.Unavailable)}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Failing("b", 1, codes.InvalidArgument)}); err == nil {
		t.Fatal("call b succeeded")
	}
	// a's success and b's answer reset the breaker's count; c's three
	// consecutive failures open it and c's fourth attempt is rejected.
	if _, err := r.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Failing("c", -1, codes.Unavailable)}, interceptors.WithMaxAttempts(4)); !errors.Is(err, resilience.ErrCircuitOpen) {
		t.Fatalf("call c: %v, want the breaker's rejection", err)
	}
	rm := r.collect(t)
	checks := []struct {
		name  string
		attrs []attribute.KeyValue
		want  int64
	}{
		{telemetry.MetricAttempts, []attribute.KeyValue{service, unaryMethod, code(codes.Unavailable)}, 5},
		{telemetry.MetricAttempts, []attribute.KeyValue{unaryMethod, code(codes.OK)}, 1},
		{telemetry.MetricAttempts, []attribute.KeyValue{unaryMethod, code(codes.InvalidArgument)}, 1},
		{telemetry.MetricAttempts, nil, 7},
		{telemetry.MetricRetries, []attribute.KeyValue{unaryMethod, code(codes.Unavailable)}, 5},
		{telemetry.MetricRetries, nil, 5},
		{telemetry.MetricRejections, []attribute.KeyValue{unaryMethod, attribute.String(telemetry.AttrReason, "breaker_open")}, 1},
		{telemetry.MetricRejections, nil, 1},
		{telemetry.MetricActiveAttempts, nil, 0},
		{telemetry.MetricAttemptDuration, []attribute.KeyValue{unaryMethod, code(codes.Unavailable)}, 5},
		{telemetry.MetricAttemptDuration, nil, 7},
		{telemetry.MetricCallDuration, []attribute.KeyValue{code(codes.OK), attribute.String(telemetry.AttrOutcome, "ok")}, 1},
		{telemetry.MetricCallDuration, []attribute.KeyValue{code(codes.InvalidArgument), attribute.String(telemetry.AttrOutcome, "error")}, 1},
		{telemetry.MetricCallDuration, []attribute.KeyValue{code(codes.Unavailable), attribute.String(telemetry.AttrOutcome, "error")}, 1},
		{telemetry.MetricCallDuration, nil, 3},
		{telemetry.MetricBreakerTransitions, []attribute.KeyValue{attribute.String(telemetry.AttrBreakerFrom, "closed"), attribute.String(telemetry.AttrBreakerTo, "open")}, 1},
		{telemetry.MetricBreakerTransitions, nil, 1},
		{telemetry.MetricBreakerState, nil, int64(breaker.Open)},
	}
	for _, c := range checks {
		if got := total(t, rm, c.name, c.attrs...); got != c.want {
			t.Errorf("%s%v = %d, want %d", c.name, c.attrs, got, c.want)
		}
	}
}

// TestMetricsRetriesExhausted checks the outcome of a call that ran out of
// attempts.
func TestMetricsRetriesExhausted(t *testing.T) {
	r := newRig(t, rigConfig{policy: interceptors.Policy{Retry: fastRetry(2)}})
	if _, err := r.client.Unary(ctxTimeout(t, 10*time.Second), &testingv1.UnaryRequest{Behavior: testservice.Failing("x", -1, codes.Unavailable)}); err == nil {
		t.Fatal("call succeeded")
	}
	rm := r.collect(t)
	if got := total(t, rm, telemetry.MetricCallDuration, code(codes.Unavailable), attribute.String(telemetry.AttrOutcome, "retries_exhausted")); got != 1 {
		t.Errorf("exhausted calls = %d, want 1", got)
	}
	if got := total(t, rm, telemetry.MetricRetries); got != 1 {
		t.Errorf("retries = %d, want 1", got)
	}
}

// TestMetricsBulkhead checks the client bulkhead's rejection counter and
// wait histogram, and the gauges of an observed server bulkhead while one
// call holds its only slot.
func TestMetricsBulkhead(t *testing.T) {
	r := newRig(t, rigConfig{
		policy: interceptors.Policy{Bulkhead: &interceptors.BulkheadPolicy{Limit: 1}},
		server: server.Config{Bulkhead: server.BulkheadConfig{Limit: 3}},
	})
	stop := r.tel.ObservePartitioned("server", r.sp.Bulkhead().Partitions())
	defer stop()
	ctx := ctxTimeout(t, 10*time.Second)
	release := r.hold(t, ctx)
	if _, err := r.client.Unary(ctx, &testingv1.UnaryRequest{}); !errors.Is(err, resilience.ErrBulkheadFull) {
		t.Fatalf("second call: %v, want the bulkhead's rejection", err)
	}
	rm := r.collect(t)
	name := attribute.String(telemetry.AttrBulkheadName, "server")
	for _, c := range []struct {
		name string
		want int64
	}{
		{telemetry.MetricBulkheadInFlight, 1},
		{telemetry.MetricBulkheadLimit, 3},
		{telemetry.MetricBulkheadWaiting, 0},
	} {
		if got := total(t, rm, c.name, name); got != c.want {
			t.Errorf("%s = %d, want %d", c.name, got, c.want)
		}
	}
	if got := total(t, rm, telemetry.MetricActiveAttempts, unaryMethod); got != 1 {
		t.Errorf("active attempts = %d, want 1", got)
	}
	if got := total(t, rm, telemetry.MetricRejections, attribute.String(telemetry.AttrReason, "bulkhead_full")); got != 1 {
		t.Errorf("bulkhead rejections = %d, want 1", got)
	}
	if got := total(t, rm, telemetry.MetricBulkheadWait, unaryMethod); got != 1 {
		t.Errorf("bulkhead waits recorded = %d, want 1 (the admitted attempt)", got)
	}
	release()
	stop()
	rm = r.collect(t)
	if got := total(t, rm, telemetry.MetricActiveAttempts, unaryMethod); got != 0 {
		t.Errorf("active attempts after the call = %d, want 0", got)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == telemetry.MetricBulkheadLimit {
				t.Errorf("bulkhead gauge still reported after stop: %+v", m.Data)
			}
		}
	}
}

// TestMetricsServer checks the server counters: a shed call is counted by
// reason, an injected fault by kind.
func TestMetricsServer(t *testing.T) {
	r := newRig(t, rigConfig{server: server.Config{
		Deadline: server.DeadlineConfig{MinRemaining: time.Hour},
		Chaos:    server.ChaosConfig{Faults: server.FaultConfig{All: server.Fault{ErrorRate: 1}}},
	}})
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := r.client.Unary(ctx, &testingv1.UnaryRequest{}); err == nil {
		t.Fatal("call with a deadline was not rejected")
	}
	if _, err := r.client.Unary(context.Background(), &testingv1.UnaryRequest{}); err == nil {
		t.Fatal("call without a deadline was not faulted")
	}
	rm := r.collect(t)
	if got := total(t, rm, telemetry.MetricServerRejections, unaryMethod, attribute.String(telemetry.AttrReason, "deadline")); got != 1 {
		t.Errorf("deadline rejections = %d, want 1", got)
	}
	if got := total(t, rm, telemetry.MetricServerFaults, unaryMethod, attribute.String(telemetry.AttrFaultKind, "error")); got != 1 {
		t.Errorf("faults = %d, want 1", got)
	}
}
