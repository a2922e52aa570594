package telemetry

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/internal/keyhash"
)

// watchedBulkheads is a bulkhead, or the partitions of a Partitioned,
// reported by the bulkhead gauges.
type watchedBulkheads struct {
	name string
	b    *bulkhead.Bulkhead
	p    *bulkhead.Partitioned
	// display turns a partition's key into the value of
	// resilience.bulkhead.key.
	display func(string) string
}

// bulkheadGauges creates the bulkhead gauges and their callback.
func (t *Telemetry) bulkheadGauges(m metric.Meter) error {
	inFlight, err1 := m.Int64ObservableGauge(MetricBulkheadInFlight, metric.WithUnit("{call}"),
		metric.WithDescription("Permits held in each observed bulkhead."))
	limit, err2 := m.Int64ObservableGauge(MetricBulkheadLimit, metric.WithUnit("{call}"),
		metric.WithDescription("Current limit of each observed bulkhead."))
	waiting, err3 := m.Int64ObservableGauge(MetricBulkheadWaiting, metric.WithUnit("{call}"),
		metric.WithDescription("Callers queued for a slot of each observed bulkhead."))
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			return err
		}
	}
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		t.mu.Lock()
		watched := t.bulkheads
		t.mu.Unlock()
		report := func(name, key string, b *bulkhead.Bulkhead) {
			s := b.Metrics()
			opt := metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrBulkheadName, name), attribute.String(AttrBulkheadKey, key)))
			o.ObserveInt64(inFlight, int64(s.InFlight), opt)
			o.ObserveInt64(limit, int64(s.Limit), opt)
			o.ObserveInt64(waiting, int64(s.Waiting), opt)
		}
		for _, w := range watched {
			if w.b != nil {
				report(w.name, "", w.b)
				continue
			}
			report(w.name, "", w.p.Overflow())
			w.p.Range(func(key string, b *bulkhead.Bulkhead) bool {
				report(w.name, w.display(key), b)
				return true
			})
		}
		return nil
	}, inFlight, limit, waiting)
	return err
}

// ObserveBulkhead reports b's permits in flight, limit and queue length as
// the gauges resilience.bulkhead.in_flight, .limit and .waiting, with
// resilience.bulkhead.name set to name and resilience.bulkhead.key empty,
// until the returned function is called (it is idempotent). It is safe for
// concurrent use.
func (t *Telemetry) ObserveBulkhead(name string, b *bulkhead.Bulkhead) (stop func()) {
	return t.watch(&watchedBulkheads{name: name, b: b})
}

// ObservePartitioned reports every partition of p as ObserveBulkhead does,
// with resilience.bulkhead.key set to a keyed hash of the partition's key,
// such as "k:3f2a9c0e71b4", under the process's random hash key (the
// default of server.Config.KeyHashKey): partition keys often name callers
// and may be secrets. The overflow partition, shared by the keys beyond
// p's cap and by the empty key (the single partition of a server bulkhead
// with PartitionNone), is reported with the empty key. Reporting stops
// when the returned function is called (it is idempotent). For a server
// pipeline, use [Telemetry.ObserveServer], which shows the keys as the
// server does. It is safe for concurrent use.
func (t *Telemetry) ObservePartitioned(name string, p *bulkhead.Partitioned) (stop func()) {
	return t.watch(&watchedBulkheads{name: name, p: p, display: keyhash.Default().Hash})
}

// ObserveServer reports every partition of s's bulkhead as
// ObservePartitioned does, with resilience.bulkhead.key set to the
// partition's key as the server shows it (server.Bulkhead.DisplayKey): a
// keyed hash under server.Config.KeyHashKey, or the key itself with
// server.BulkheadConfig.ShowKeys or PartitionByMethod. It reports nothing
// when s has no bulkhead. Reporting stops when the returned function is
// called (it is idempotent). It is safe for concurrent use.
func (t *Telemetry) ObserveServer(name string, s *server.Server) (stop func()) {
	bh := s.Bulkhead()
	if bh.Partitions() == nil {
		return func() {}
	}
	return t.watch(&watchedBulkheads{name: name, p: bh.Partitions(), display: bh.DisplayKey})
}

func (t *Telemetry) watch(w *watchedBulkheads) func() {
	t.mu.Lock()
	t.bulkheads = append(t.bulkheads[:len(t.bulkheads):len(t.bulkheads)], w)
	t.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			kept := make([]*watchedBulkheads, 0, len(t.bulkheads))
			for _, x := range t.bulkheads {
				if x != w {
					kept = append(kept, x)
				}
			}
			t.bulkheads = kept
		})
	}
}
