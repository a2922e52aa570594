package telemetry_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// The client's EventEvicted and EventOverflow are counted per cache, an
// eviction is logged at Debug, and overflows are logged at Warn at most
// once per OverflowLogInterval and cache, each record saying how many
// overflows it stands for.
func TestClientCacheEvents(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	logs := &syncBuffer{}
	tel, err := telemetry.New(telemetry.Config{
		MeterProvider: mp,
		Logger:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: dropTime})),
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	telemetry.SetClock(tel, func() time.Time { return now })
	on := tel.ClientObserver().OnEvent
	ctx := context.Background()

	on(ctx, interceptors.Event{Kind: interceptors.EventEvicted, Cache: "breaker", Key: "dns:///a/pkg.S"})
	on(ctx, interceptors.Event{Kind: interceptors.EventEvicted, Cache: "state", Target: "dns:///a", Method: "/pkg.S/M"})
	overflow := interceptors.Event{Kind: interceptors.EventOverflow, Cache: "bulkhead", Key: "k1"}
	on(ctx, overflow) // logged
	now = now.Add(time.Second)
	overflow.Key = "k2"
	on(ctx, overflow) // within the interval: counted, not logged
	// Another cache has its own interval: logged.
	on(ctx, interceptors.Event{Kind: interceptors.EventOverflow, Cache: "budget", Key: "dns:///b"})
	now = now.Add(telemetry.OverflowLogInterval)
	overflow.Key = "k3"
	on(ctx, overflow) // logged, for k2 and k3

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	cache := func(name string) attribute.KeyValue { return attribute.String(telemetry.AttrCache, name) }
	for _, c := range []struct {
		metric, cache string
		want          int64
	}{
		{telemetry.MetricCacheEvictions, "breaker", 1},
		{telemetry.MetricCacheEvictions, "state", 1},
		{telemetry.MetricCacheOverflows, "bulkhead", 3},
		{telemetry.MetricCacheOverflows, "budget", 1},
	} {
		if got := total(t, rm, c.metric, cache(c.cache)); got != c.want {
			t.Errorf("%s{cache=%s} = %d, want %d", c.metric, c.cache, got, c.want)
		}
	}

	want := []string{
		`level=DEBUG msg="bounded cache evicted an idle entry" cache=breaker key=dns:///a/pkg.S`,
		`level=DEBUG msg="bounded cache evicted an idle entry" cache=state target=dns:///a method=/pkg.S/M`,
		`level=WARN msg="bounded cache full of busy entries: new key shares the overflow entry" cache=bulkhead key=k1 overflows=1`,
		`level=WARN msg="bounded cache full of busy entries: new key shares the overflow entry" cache=budget key=dns:///b overflows=1`,
		`level=WARN msg="bounded cache full of busy entries: new key shares the overflow entry" cache=bulkhead key=k3 overflows=2`,
	}
	if got := logLines(logs); !slices.Equal(got, want) {
		t.Errorf("logs:\n%s\nwant:\n%s", got, want)
	}
}

// The server's EventPartitionOverflow and EventPartitionEvicted, from a
// real bulkhead with one keyed partition, are counted as the cache
// "server_bulkhead" and logged.
func TestServerPartitionEvents(t *testing.T) {
	keyOf := func(ctx context.Context, _ string) string {
		if v := metadata.ValueFromIncomingContext(ctx, "x-caller"); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	r := newRig(t, rigConfig{logLevel: slog.LevelDebug, server: server.Config{Bulkhead: server.BulkheadConfig{
		Limit: 1, PartitionBy: server.PartitionByFunc, KeyFunc: keyOf, MaxPartitions: 1,
	}}})
	ctx := ctxTimeout(t, 10*time.Second)
	as := func(caller string) context.Context { return metadata.AppendToOutgoingContext(ctx, "x-caller", caller) }
	release := r.hold(t, as("a")) // the only keyed partition is busy
	if _, err := r.client.Unary(as("b"), &testingv1.UnaryRequest{}); err != nil {
		t.Fatalf("caller b: %v, want OK in the overflow partition", err)
	}
	release()
	// The client has its answer before the server is done with the call:
	// wait until the server spans of a's and b's calls ended, which
	// otelgrpc does after the pipeline released their slots, so that a's
	// partition is idle and c takes its place.
	r.spans.waitKind(t, trace.SpanKindServer, 2)
	if _, err := r.client.Unary(as("c"), &testingv1.UnaryRequest{}); err != nil {
		t.Fatalf("caller c: %v", err)
	}
	rm := r.collect(t)
	cache := attribute.String(telemetry.AttrCache, telemetry.CacheServerBulkhead)
	if got := total(t, rm, telemetry.MetricCacheOverflows, cache); got != 1 {
		t.Errorf("overflows = %d, want 1", got)
	}
	if got := total(t, rm, telemetry.MetricCacheEvictions, cache); got != 1 {
		t.Errorf("evictions = %d, want 1", got)
	}
	lines := logLines(r.logs)
	for _, want := range []string{
		`level=WARN msg="bounded cache full of busy entries: new key shares the overflow entry" cache=server_bulkhead key=` + r.sp.Bulkhead().DisplayKey("b") + ` overflows=1`,
		`level=DEBUG msg="bounded cache evicted an idle entry" cache=server_bulkhead key=` + r.sp.Bulkhead().DisplayKey("a"),
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("no log line %s in\n%s", want, lines)
		}
	}
}
