package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/ratelimit"
)

// pointAttrs returns the attribute sets of every data point of the metric
// called name.
func pointAttrs(t *testing.T, rm metricdata.ResourceMetrics, name string) []attribute.Set {
	t.Helper()
	var out []attribute.Set
	switch d := find(t, rm, name).Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	default:
		t.Fatalf("metric %s has data of type %T", name, d)
	}
	return out
}

// mentions reports whether any metric attribute, span attribute, span
// event attribute or log line holds s.
func mentions(rm metricdata.ResourceMetrics, spans []sdktrace.ReadOnlySpan, logs string, s string) bool {
	if strings.Contains(logs, s) || strings.Contains(fmt.Sprint(rm), s) {
		return true
	}
	for _, sp := range spans {
		if strings.Contains(fmt.Sprint(sp.Attributes(), sp.Events()), s) {
			return true
		}
	}
	return false
}

// The client's rate limit refusing an attempt leaves an event and an error
// status on the call span (and no attempt span: nothing was sent), and
// counts in resilience.client.rate_limited by method only.
func TestClientRateLimitTelemetry(t *testing.T) {
	r := newRig(t, rigConfig{policy: interceptors.Policy{RateLimit: &interceptors.RateLimitPolicy{Rate: 0.001, Burst: 1}}})
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := r.client.Unary(ctx, &testingv1.UnaryRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err := r.client.Unary(ctx, &testingv1.UnaryRequest{})
	if !errors.Is(err, resilience.ErrRateLimited) {
		t.Fatalf("second call: %v, want one matching ErrRateLimited", err)
	}
	spans := r.spans.wait(t, 3+1) // the first call, its attempt and server span; the refused call
	var limited sdktrace.ReadOnlySpan
	for _, s := range byKind(spans, trace.SpanKindClient, callName) {
		if slices.Contains(events(s), telemetry.EventRateLimited) {
			limited = s
		}
	}
	if limited == nil {
		t.Fatal("no call span with a rate-limit event")
	}
	if limited.Status().Code != otelcodes.Error || len(childrenOf(spans, limited)) != 0 {
		t.Errorf("refused call: status %v, %d children; want error, none", limited.Status(), len(childrenOf(spans, limited)))
	}
	for _, e := range limited.Events() {
		if e.Name != telemetry.EventRateLimited {
			continue
		}
		if ra, ok := attr(e.Attributes, telemetry.AttrRateLimitRetryAfter); !ok || ra.AsFloat64() <= 0 || ra.AsFloat64() > 1e6 {
			t.Errorf("retry after %v ms, want in (0, 1e6]", ra.AsFloat64())
		}
	}
	rm := r.collect(t)
	if got := total(t, rm, telemetry.MetricClientRateLimited, service, unaryMethod); got != 1 {
		t.Errorf("%s = %d, want 1", telemetry.MetricClientRateLimited, got)
	}
	for _, set := range pointAttrs(t, rm, telemetry.MetricClientRateLimited) {
		if set.Len() != 3 {
			t.Errorf("%s has attributes %v, want rpc.system, rpc.service and rpc.method only", telemetry.MetricClientRateLimited, set.ToSlice())
		}
	}
}

// The server's rate limit leaves an event on the server span, counts in
// resilience.server.rate_limited by method and quota class, and
// ObserveRateLimit reports the limiter's admitted and limited calls and
// its keys; no span, metric or log names the caller's key.
func TestServerRateLimitTelemetry(t *testing.T) {
	const secret = "s3cr3t-api-key"
	r := newRig(t, rigConfig{logLevel: slog.LevelDebug, server: server.Config{RateLimit: server.RateLimitConfig{
		Rate: 0.001, Burst: 1, PartitionBy: server.PartitionByHeader, Header: "x-api-key",
	}}})
	stop := r.tel.ObserveRateLimit("api", r.sp.RateLimit())
	defer stop()
	ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second), "x-api-key", secret)
	if _, err := r.client.Unary(ctx, &testingv1.UnaryRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err := r.client.Unary(ctx, &testingv1.UnaryRequest{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second call: %v, want RESOURCE_EXHAUSTED", err)
	}
	// Wait for the server span with the event: it may end a moment after
	// the client has its answer.
	var ev *sdktrace.Event
	for n := 5; ev == nil; n++ {
		spans, err := r.spans.waitFor(n)
		if err != nil {
			t.Fatalf("no server span has a %s event: %v", telemetry.EventRateLimited, err)
		}
		for _, s := range byKind(spans, trace.SpanKindServer, "grpcresilience.testing.v1.TestService/Unary") {
			for _, e := range s.Events() {
				if e.Name == telemetry.EventRateLimited {
					ev = &e
				}
			}
		}
	}
	if p, _ := attr(ev.Attributes, telemetry.AttrRateLimitPartition); p.AsString() != "header:x-api-key" {
		t.Errorf("event partition %q, want header:x-api-key", p.AsString())
	}
	if ra, _ := attr(ev.Attributes, telemetry.AttrRateLimitRetryAfter); ra.AsFloat64() <= 0 || ra.AsFloat64() > 1e6 {
		t.Errorf("event retry after %v ms, want in (0, 1e6]", ra.AsFloat64())
	}

	rm := r.collect(t)
	partition := attribute.String(telemetry.AttrRateLimitPartition, "header:x-api-key")
	if got := total(t, rm, telemetry.MetricServerRateLimited, service, unaryMethod, partition); got != 1 {
		t.Errorf("%s = %d, want 1", telemetry.MetricServerRateLimited, got)
	}
	name := attribute.String(telemetry.AttrRateLimitName, "api")
	for _, c := range []struct {
		metric string
		want   int64
	}{
		{telemetry.MetricRateLimitAdmitted, 1},
		{telemetry.MetricRateLimitLimited, 1},
		{telemetry.MetricRateLimitKeys, 1},
	} {
		if got := total(t, rm, c.metric, name); got != c.want {
			t.Errorf("%s = %d, want %d", c.metric, got, c.want)
		}
	}
	if mentions(rm, r.spans.Ended(), r.logs.String(), secret) {
		t.Errorf("the caller's key appears in the telemetry")
	}
	if !strings.Contains(r.logs.String(), `msg="grpc call rejected by the server's rate limit"`) {
		t.Errorf("no debug log of the rejection in\n%s", r.logs.String())
	}

	stop()
	rm = r.collect(t)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == telemetry.MetricRateLimitAdmitted {
				if d, ok := m.Data.(metricdata.Sum[int64]); ok && len(d.DataPoints) > 0 {
					t.Errorf("after stop, %s still has %d data points", m.Name, len(d.DataPoints))
				}
			}
		}
	}
}

// A key that finds every place of its quota busy is decided by the
// overflow limiter: counted as an overflow of the cache
// "server_rate_limit" and logged under the quota's class, not the key.
func TestServerRateLimitOverflow(t *testing.T) {
	r := newRig(t, rigConfig{logLevel: slog.LevelDebug, server: server.Config{RateLimit: server.RateLimitConfig{
		Rate: 0.001, Burst: 1, PartitionBy: server.PartitionByHeader, Header: "x-api-key", MaxPartitions: 1,
	}}})
	ctx := ctxTimeout(t, 10*time.Second)
	as := func(key string) context.Context { return metadata.AppendToOutgoingContext(ctx, "x-api-key", key) }
	if _, err := r.client.Unary(as("key-a"), &testingv1.UnaryRequest{}); err != nil {
		t.Fatal(err)
	}
	// key-a's limiter is busy for 1000 s: key-b goes to the overflow.
	if _, err := r.client.Unary(as("key-b"), &testingv1.UnaryRequest{}); err != nil {
		t.Fatalf("key-b: %v, want its first call admitted by the overflow limiter", err)
	}
	rm := r.collect(t)
	cache := attribute.String(telemetry.AttrCache, telemetry.CacheServerRateLimit)
	if got := total(t, rm, telemetry.MetricCacheOverflows, cache); got != 1 {
		t.Errorf("overflows = %d, want 1", got)
	}
	want := `level=WARN msg="bounded cache full of busy entries: new key shares the overflow entry" cache=server_rate_limit quota=header:x-api-key overflows=1`
	if lines := logLines(r.logs); !slices.Contains(lines, want) {
		t.Errorf("no log line %s in\n%s", want, lines)
	}
	if strings.Contains(r.logs.String(), "key-b") {
		t.Errorf("the log names the caller's key")
	}
}

// failingStore is a rate-limit store that cannot decide, as a shared store
// does while it is unreachable.
type failingStore struct{}

var errUnreachable = errors.New("store unreachable")

func (failingStore) Take(context.Context, string, int) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, errUnreachable
}

// A call admitted because the rate limit's store could not decide is
// counted under its method and quota class, marked on the server span with
// the store's error, and logged, never under the caller's key.
func TestServerRateLimitStoreFailure(t *testing.T) {
	const secret = "s3cr3t-api-key"
	r := newRig(t, rigConfig{logLevel: slog.LevelDebug, server: server.Config{RateLimit: server.RateLimitConfig{
		Rate: 1, PartitionBy: server.PartitionByHeader, Header: "x-api-key",
		Store: func(string, server.RateQuota) ratelimit.Store { return failingStore{} },
	}}})
	ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second), "x-api-key", secret)
	for range 2 {
		if _, err := r.client.Unary(ctx, &testingv1.UnaryRequest{}); err != nil {
			t.Fatalf("call with the store failing: %v, want it admitted", err)
		}
	}
	var ev *sdktrace.Event
	for n := 4; ev == nil; n++ {
		spans, err := r.spans.waitFor(n)
		if err != nil {
			t.Fatalf("no server span has a %s event: %v", telemetry.EventRateLimitStoreFailed, err)
		}
		for _, s := range byKind(spans, trace.SpanKindServer, "grpcresilience.testing.v1.TestService/Unary") {
			for _, e := range s.Events() {
				if e.Name == telemetry.EventRateLimitStoreFailed {
					ev = &e
				}
			}
		}
	}
	if p, _ := attr(ev.Attributes, telemetry.AttrRateLimitPartition); p.AsString() != "header:x-api-key" {
		t.Errorf("event partition %q, want header:x-api-key", p.AsString())
	}
	if m, _ := attr(ev.Attributes, "exception.message"); m.AsString() != errUnreachable.Error() {
		t.Errorf("event error %q, want %q", m.AsString(), errUnreachable)
	}
	rm := r.collect(t)
	partition := attribute.String(telemetry.AttrRateLimitPartition, "header:x-api-key")
	if got := total(t, rm, telemetry.MetricRateLimitStoreFailures, service, unaryMethod, partition); got != 2 {
		t.Errorf("%s = %d, want 2", telemetry.MetricRateLimitStoreFailures, got)
	}
	if !strings.Contains(r.logs.String(), "store unreachable") {
		t.Errorf("no debug log with the store's error in\n%s", r.logs.String())
	}
	if mentions(rm, r.spans.Ended(), r.logs.String(), secret) {
		t.Errorf("the caller's key appears in the telemetry")
	}
}
