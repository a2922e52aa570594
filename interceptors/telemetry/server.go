package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
)

// serverObserver holds the hook of the server.Observer of a Telemetry.
type serverObserver struct{ t *Telemetry }

// fault is the value of resilience.fault.kind.
type fault uint8

const (
	faultLatency fault = iota
	faultError
	faultAbort
	numFaults
)

var faultNames = [numFaults]string{"latency", "error", "abort"}

func (a *methodAttrs) fault(f fault) *measurementOpts {
	return a.faults[f].get(func() []attribute.KeyValue {
		return append(a.baseKV(), attribute.String(AttrFaultKind, faultNames[f]))
	})
}

// event adds e as an event to the server span in ctx (otelgrpc's, when
// its server stats handler is installed), counts it and logs it.
func (o serverObserver) event(ctx context.Context, e server.Event) {
	t := o.t
	switch e.Kind {
	case server.EventPartitionEvicted:
		t.cacheEvicted(ctx, CacheServerBulkhead, slog.String("key", e.Key))
		return
	case server.EventPartitionOverflow:
		t.cacheOverflowed(ctx, CacheServerBulkhead, slog.String("key", e.Key))
		return
	case server.EventRateLimitEvicted:
		t.cacheEvicted(ctx, CacheServerRateLimit, slog.String("quota", e.Key))
		return
	case server.EventRateLimitOverflow:
		t.cacheOverflowed(ctx, CacheServerRateLimit, slog.String("quota", e.Key))
		return
	}
	a := t.attrsOf(e.FullMethod)
	span := trace.SpanFromContext(ctx)
	recording := span.IsRecording()
	var (
		name  string
		msg   string
		attrs []attribute.KeyValue
	)
	switch e.Kind {
	case server.EventShed:
		t.serverRejects.Add(ctx, 1, a.reason(reasonShed).add...)
		name, msg = EventShed, "grpc call shed by the server bulkhead"
		if recording {
			attrs = []attribute.KeyValue{attribute.Int(AttrRPCStatusCode, int(e.Code)),
				attribute.String(AttrBulkheadKey, e.Key), attribute.Float64(AttrServerPushback, ms(e.Delay))}
		}
	case server.EventRateLimited:
		t.serverLimited.Add(ctx, 1, a.rateLimited(e.Key).add...)
		name, msg = EventRateLimited, "grpc call rejected by the server's rate limit"
		if recording {
			attrs = []attribute.KeyValue{attribute.Int(AttrRPCStatusCode, int(e.Code)),
				attribute.String(AttrRateLimitPartition, e.Key), attribute.Float64(AttrRateLimitRetryAfter, ms(e.Delay))}
		}
	case server.EventRateLimitStoreFailed:
		t.storeFailures.Add(ctx, 1, a.rateLimited(e.Key).add...)
		name, msg = EventRateLimitStoreFailed, "grpc call admitted: the rate limit's store could not decide"
		if recording {
			attrs = []attribute.KeyValue{attribute.String(AttrRateLimitPartition, e.Key)}
			if e.Err != nil {
				attrs = append(attrs, attribute.String("exception.message", e.Err.Error()))
			}
		}
	case server.EventDeadlineRejected:
		t.serverRejects.Add(ctx, 1, a.reason(reasonServerDeadline).add...)
		name, msg = EventDeadlineRejected, "grpc call rejected for its deadline"
		if recording {
			attrs = []attribute.KeyValue{attribute.Int(AttrRPCStatusCode, int(e.Code)), attribute.Float64(AttrRemainingMs, ms(e.Remaining))}
		}
	case server.EventDefaultDeadline:
		t.serverDefaults.Add(ctx, 1, a.baseOpt.add...)
		name, msg = EventDefaultDeadline, "grpc call given the default deadline"
		if recording {
			attrs = []attribute.KeyValue{attribute.Float64(AttrTimeoutMs, ms(e.Delay))}
		}
	case server.EventFaultLatency:
		t.serverFaults.Add(ctx, 1, a.fault(faultLatency).add...)
		name, msg = EventFault, "fault injected: latency"
		if recording {
			attrs = []attribute.KeyValue{attribute.String(AttrFaultKind, faultNames[faultLatency]), attribute.Float64(AttrDelayMs, ms(e.Delay))}
		}
	case server.EventFaultError:
		t.serverFaults.Add(ctx, 1, a.fault(faultError).add...)
		name, msg = EventFault, "fault injected: error"
		if recording {
			attrs = []attribute.KeyValue{attribute.String(AttrFaultKind, faultNames[faultError]),
				attribute.Int(AttrRPCStatusCode, int(e.Code)), attribute.Float64(AttrServerPushback, ms(e.Delay))}
		}
	case server.EventFaultAbort:
		t.serverFaults.Add(ctx, 1, a.fault(faultAbort).add...)
		name, msg = EventFault, "fault injected: stream aborted"
		if recording {
			attrs = []attribute.KeyValue{attribute.String(AttrFaultKind, faultNames[faultAbort]),
				attribute.Int(AttrRPCStatusCode, int(e.Code)), attribute.Int("resilience.fault.messages", e.Messages)}
		}
	default:
		return
	}
	if recording {
		span.AddEvent(name, trace.WithAttributes(attrs...))
	}
	if t.log.Enabled(ctx, slog.LevelDebug) {
		la := []slog.Attr{slog.String("method", e.FullMethod), slog.String("event", e.Kind.String())}
		if e.Code != 0 {
			la = append(la, slog.String("code", e.Code.String()))
		}
		if e.Delay > 0 {
			la = append(la, slog.Duration("delay", e.Delay))
		}
		if e.Err != nil {
			la = append(la, slog.String("error", e.Err.Error()))
		}
		t.log.LogAttrs(ctx, slog.LevelDebug, msg, la...)
	}
}
