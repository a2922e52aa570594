package telemetry_test

import (
	"context"
	"fmt"
	"log"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
)

// ObserveServer reports a server bulkhead's partitions as gauges, each
// partition named as the server shows it: a method name as it is, a
// caller's key as a keyed hash.
func ExampleTelemetry_ObserveServer() {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	tel, err := telemetry.New(telemetry.Config{MeterProvider: mp})
	if err != nil {
		log.Fatal(err)
	}
	s, err := server.New(server.Config{Bulkhead: server.BulkheadConfig{Limit: 8, PartitionBy: server.PartitionByMethod}})
	if err != nil {
		log.Fatal(err)
	}
	s.Bulkhead().Partitions().Get("/pkg.Svc/Get") // made by a call's arrival, normally
	stop := tel.ObserveServer("api", s)
	defer stop()

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		log.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != telemetry.MetricBulkheadLimit {
				continue
			}
			for _, p := range m.Data.(metricdata.Gauge[int64]).DataPoints {
				key, _ := p.Attributes.Value(telemetry.AttrBulkheadKey)
				fmt.Printf("limit %d for %q\n", p.Value, key.AsString())
			}
		}
	}
	// Unordered output:
	// limit 8 for ""
	// limit 8 for "/pkg.Svc/Get"
}
