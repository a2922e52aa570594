package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
)

// CacheServerBulkhead is the value of resilience.cache for the keyed
// partitions of a server bulkhead (package server). The client's caches
// are named by interceptors.Event.Cache: "state", "breaker", "bulkhead"
// and "budget".
const CacheServerBulkhead = "server_bulkhead"

// CacheServerRateLimit is the value of resilience.cache for the keys of a
// server rate limit (package server); its log records name the quota's
// class ("quota"), never the key.
const CacheServerRateLimit = "server_rate_limit"

// CacheMethods is the value of resilience.cache for the attribute sets
// a Telemetry keeps per method name: it holds 1024 methods, and drops one
// not used recently to make room for another, which costs the dropped
// method a rebuild of its sets when it comes back, nothing else.
const CacheMethods = "telemetry_methods"

// OverflowLogInterval is the least time between two overflow warnings of
// one cache: a cache full of busy entries may refuse a new key on every
// call, and each refusal is counted, but only logged once per interval,
// with the number of refusals the record stands for.
const OverflowLogInterval = 10 * time.Second

// cacheOpts returns the measurement options of cache, built once per
// cache name.
func (t *Telemetry) cacheOpts(cache string) *measurementOpts {
	if o, ok := t.caches.Load(cache); ok {
		return o.(*measurementOpts)
	}
	o, _ := t.caches.LoadOrStore(cache, newMeasurementOpts(attribute.NewSet(attribute.String(AttrCache, cache))))
	return o.(*measurementOpts)
}

// clientCacheKey returns the log attributes naming the entry of a client
// EventEvicted or EventOverflow: its key, or the target and method of an
// entry of the "state" cache.
func clientCacheKey(e interceptors.Event) []slog.Attr {
	if e.Key == "" && (e.Target != "" || e.Method != "") {
		return []slog.Attr{slog.String("target", e.Target), slog.String("method", e.Method)}
	}
	return []slog.Attr{slog.String("key", e.Key)}
}

// cacheEvicted counts an entry that cache dropped because it was idle and
// room was needed, and logs it at Debug: it is the cache working as it
// should.
func (t *Telemetry) cacheEvicted(ctx context.Context, cache string, key ...slog.Attr) {
	t.evictions.Add(ctx, 1, t.cacheOpts(cache).add...)
	if t.log.Enabled(ctx, slog.LevelDebug) {
		t.log.LogAttrs(ctx, slog.LevelDebug, "bounded cache evicted an idle entry",
			append([]slog.Attr{slog.String("cache", cache)}, key...)...)
	}
}

// cacheOverflowed counts a new key that cache, full of busy entries, sent
// to its overflow entry, and logs it at Warn, at most once per
// OverflowLogInterval and cache: the keys sharing the overflow entry
// share its protection, which the operator should know and may fix by
// raising the cap.
func (t *Telemetry) cacheOverflowed(ctx context.Context, cache string, key ...slog.Attr) {
	t.overflows.Add(ctx, 1, t.cacheOpts(cache).add...)
	if !t.log.Enabled(ctx, slog.LevelWarn) {
		return
	}
	l, ok := t.overflowLogs.Load(cache)
	if !ok {
		l, _ = t.overflowLogs.LoadOrStore(cache, &logLimiter{})
	}
	n, ok := l.(*logLimiter).allow(t.now())
	if !ok {
		return
	}
	la := append([]slog.Attr{slog.String("cache", cache)}, key...)
	la = append(la, slog.Int("overflows", n))
	t.log.LogAttrs(ctx, slog.LevelWarn, "bounded cache full of busy entries: new key shares the overflow entry", la...)
}

// logLimiter lets one record through per OverflowLogInterval. It is safe
// for concurrent use.
type logLimiter struct {
	mu      sync.Mutex
	next    time.Time // zero: the next record goes through
	pending int       // events since the last record went through
}

// allow reports whether a record may be logged at now and, if so, how
// many events it stands for: this one and those suppressed before it.
func (l *logLimiter) allow(now time.Time) (events int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending++
	if now.Before(l.next) {
		return 0, false
	}
	events, l.pending = l.pending, 0
	l.next = now.Add(OverflowLogInterval)
	return events, true
}
