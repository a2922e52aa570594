package telemetry

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/engineeringlabs/grpc-resilience/ratelimit"
)

// RateLimitSource is what ObserveRateLimit reports: a *ratelimit.Keyed,
// or a server pipeline's rate limit, server.Server.RateLimit().
type RateLimitSource interface {
	Metrics() ratelimit.KeyedMetrics
}

// watchedRateLimit is a rate limit reported by the rate-limit
// instruments.
type watchedRateLimit struct {
	name string
	l    RateLimitSource
	set  attribute.Set
}

// rateLimitInstruments creates the observable rate-limit instruments and
// their callback.
func (t *Telemetry) rateLimitInstruments(m metric.Meter) error {
	admitted, err1 := m.Int64ObservableCounter(MetricRateLimitAdmitted, metric.WithUnit("{call}"),
		metric.WithDescription("Calls each observed rate limit admitted."))
	limited, err2 := m.Int64ObservableCounter(MetricRateLimitLimited, metric.WithUnit("{call}"),
		metric.WithDescription("Calls each observed rate limit refused."))
	keys, err3 := m.Int64ObservableGauge(MetricRateLimitKeys, metric.WithUnit("{key}"),
		metric.WithDescription("Keys each observed rate limit keeps a limiter for."))
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			return err
		}
	}
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		t.mu.Lock()
		watched := t.rateLimits
		t.mu.Unlock()
		for _, w := range watched {
			s := w.l.Metrics()
			opt := metric.WithAttributeSet(w.set)
			o.ObserveInt64(admitted, int64(s.Admitted), opt)
			o.ObserveInt64(limited, int64(s.Limited), opt)
			o.ObserveInt64(keys, int64(s.Keys), opt)
		}
		return nil
	}, admitted, limited, keys)
	return err
}

// ObserveRateLimit reports the calls l admitted and refused, as the
// observable counters resilience.rate_limit.admitted and .limited, and
// the keys it keeps, as the gauge resilience.rate_limit.keys, with
// resilience.rate_limit.name set to name, until the returned function is
// called (it is idempotent). For a server pipeline, pass
// server.Server.RateLimit(). No attribute names a key: the counts are
// totals over every key. It is safe for concurrent use.
func (t *Telemetry) ObserveRateLimit(name string, l RateLimitSource) (stop func()) {
	w := &watchedRateLimit{name: name, l: l, set: attribute.NewSet(attribute.String(AttrRateLimitName, name))}
	t.mu.Lock()
	t.rateLimits = append(t.rateLimits[:len(t.rateLimits):len(t.rateLimits)], w)
	t.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			kept := make([]*watchedRateLimit, 0, len(t.rateLimits))
			for _, x := range t.rateLimits {
				if x != w {
					kept = append(kept, x)
				}
			}
			t.rateLimits = kept
		})
	}
}
