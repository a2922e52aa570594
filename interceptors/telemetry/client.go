package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
)

// clientObserver holds the hooks of the interceptors.Observer of a
// Telemetry.
type clientObserver struct{ t *Telemetry }

// callState is what OnCallStart leaves in the call's context for
// OnCallEnd and the call's events.
type callState struct {
	start time.Time
	span  trace.Span // nil when not tracing
	attrs *methodAttrs
}

// attemptState is what OnAttemptStart leaves in the attempt's context for
// OnAttemptEnd.
type attemptState struct {
	start time.Time
	span  trace.Span // nil when not tracing
}

type callKey struct{}

type attemptKey struct{}

func callStateOf(ctx context.Context) *callState {
	cs, _ := ctx.Value(callKey{}).(*callState)
	return cs
}

// callStart starts the call's span, a child of the span in ctx.
func (o clientObserver) callStart(ctx context.Context, info interceptors.CallInfo) context.Context {
	t := o.t
	tracer := t.currentTracer()
	if tracer == nil && !t.callDuration.Enabled(ctx) {
		return ctx // nothing to measure: callEnd finds no state
	}
	a := t.attrsOf(info.Method)
	cs := &callState{start: time.Now(), attrs: a}
	if tracer != nil {
		var span trace.Span
		ctx, span = tracer.Start(ctx, a.callName, trace.WithSpanKind(trace.SpanKindClient))
		if span.IsRecording() {
			span.SetAttributes(rpcSystem,
				attribute.String(AttrRPCService, a.service),
				attribute.String(AttrRPCMethod, a.method),
				attribute.String(AttrPattern, info.Pattern.String()),
				attribute.Int(AttrMaxAttempts, info.MaxAttempts),
				attribute.Bool(AttrIdempotent, info.Idempotent))
			cs.span = span
		}
	}
	return context.WithValue(ctx, callKey{}, cs)
}

// callEnd ends the call's span and records its duration.
func (o clientObserver) callEnd(ctx context.Context, info interceptors.CallInfo, err error) {
	t := o.t
	cs := callStateOf(ctx)
	if cs == nil {
		return
	}
	code := status.Code(err)
	out := outcomeOK
	switch {
	case info.Fallback:
		out = outcomeFallback
	case err == nil:
	case isExhausted(err):
		out = outcomeExhausted
	default:
		out = outcomeError
	}
	t.callDuration.Record(ctx, time.Since(cs.start).Seconds(), cs.attrs.outcome(code, out).rec...)
	if span := cs.span; span != nil {
		span.SetAttributes(
			attribute.Int(AttrRPCStatusCode, int(code)),
			attribute.Int(AttrAttempts, info.Attempts),
			attribute.Bool(AttrFallback, info.Fallback),
			attribute.String(AttrOutcome, outcomeNames[out]))
		if err != nil {
			span.SetStatus(otelcodes.Error, errorDescription(err))
		}
		span.End()
	}
}

// attemptStart starts the attempt's span, a child of the call's span, and
// injects its trace context into the attempt's outgoing metadata.
func (o clientObserver) attemptStart(ctx context.Context, info interceptors.AttemptInfo) context.Context {
	t := o.t
	a := t.attrsOf(info.Method)
	t.activeAttempts.Add(ctx, 1, a.baseOpt.add...)
	if info.BulkheadWait > 0 {
		t.bulkheadWait.Record(ctx, info.BulkheadWait.Seconds(), a.baseOpt.rec...)
	}
	tracer := t.currentTracer()
	if tracer == nil && !t.attemptDuration.Enabled(ctx) {
		return ctx // nothing to measure: attemptEnd only counts
	}
	as := &attemptState{start: time.Now()}
	if tracer != nil {
		var span trace.Span
		ctx, span = tracer.Start(ctx, a.attemptName, trace.WithSpanKind(trace.SpanKindClient))
		if span.IsRecording() {
			attrs := make([]attribute.KeyValue, 0, 11)
			attrs = append(attrs, rpcSystem,
				attribute.String(AttrRPCService, a.service),
				attribute.String(AttrRPCMethod, a.method),
				attribute.Int(AttrAttempt, info.Attempt),
				attribute.Float64(AttrDelayMs, ms(info.Delay)),
				attribute.Bool(AttrHedge, info.Hedge),
				attribute.Bool(AttrPushbackHonoured, info.PushbackHonoured))
			if info.Breaker {
				attrs = append(attrs, attribute.String(AttrBreakerState, info.BreakerState.String()))
			}
			if info.BulkheadWait > 0 {
				attrs = append(attrs, attribute.Float64(AttrBulkheadWaitMs, ms(info.BulkheadWait)))
			}
			if info.Timeout > 0 {
				attrs = append(attrs, attribute.Float64(AttrTimeoutMs, ms(info.Timeout)))
			}
			span.SetAttributes(attrs...)
			as.span = span
		}
		if span.SpanContext().IsValid() {
			ctx = t.inject(ctx)
		}
	}
	return context.WithValue(ctx, attemptKey{}, as)
}

// attemptEnd ends the attempt's span and counts the attempt.
func (o clientObserver) attemptEnd(ctx context.Context, info interceptors.AttemptInfo, err error) {
	t := o.t
	a := t.attrsOf(info.Method)
	code := status.Code(err)
	opts := a.code(code)
	t.activeAttempts.Add(ctx, -1, a.baseOpt.add...)
	t.attempts.Add(ctx, 1, opts.add...)
	as, _ := ctx.Value(attemptKey{}).(*attemptState)
	if as == nil {
		return
	}
	t.attemptDuration.Record(ctx, time.Since(as.start).Seconds(), opts.rec...)
	if span := as.span; span != nil {
		span.SetAttributes(attribute.Int(AttrRPCStatusCode, int(code)))
		if errors.As(err, new(*resilience.TimeoutError)) {
			span.SetAttributes(attribute.Bool(AttrTimedOut, true))
		}
		if pb := info.Pushback; pb.Present {
			d := -1.0 // the server forbade retries
			if pb.Retry {
				d = ms(pb.Delay)
			}
			span.SetAttributes(attribute.Float64(AttrServerPushback, d))
		}
		if err != nil {
			span.SetStatus(otelcodes.Error, errorDescription(err))
		}
		span.End()
	}
	if err != nil && t.log.Enabled(ctx, slog.LevelDebug) {
		t.log.LogAttrs(ctx, slog.LevelDebug, "grpc attempt failed",
			slog.String("method", info.Method), slog.Int("attempt", info.Attempt),
			slog.String("code", code.String()), slog.String("error", err.Error()))
	}
}

// event records e on the call's span, counts it and logs it.
func (o clientObserver) event(ctx context.Context, e interceptors.Event) {
	t := o.t
	switch e.Kind {
	case interceptors.EventBreakerStateChange:
		t.breakerChanged(ctx, e.StateChange)
		return
	case interceptors.EventEvicted:
		t.cacheEvicted(ctx, e.Cache, clientCacheKey(e)...)
		return
	case interceptors.EventOverflow:
		t.cacheOverflowed(ctx, e.Cache, clientCacheKey(e)...)
		return
	}
	var a *methodAttrs
	var span trace.Span
	if cs := callStateOf(ctx); cs != nil {
		a, span = cs.attrs, cs.span
	} else {
		a = t.attrsOf(e.Method)
	}
	code := status.Code(e.Err)
	var (
		name   string
		level  = slog.LevelDebug
		msg    string
		failed bool
		attrs  []attribute.KeyValue
	)
	switch e.Kind {
	case interceptors.EventRetry:
		t.retries.Add(ctx, 1, a.code(code).add...)
		name, msg = EventRetry, "grpc call retried"
		if span != nil {
			attrs = []attribute.KeyValue{attribute.Int(AttrAttempt, e.Attempt), attribute.Int(AttrRPCStatusCode, int(code)), attribute.Float64(AttrDelayMs, ms(e.Delay))}
		}
	case interceptors.EventRetriesExhausted:
		name, msg, level = EventRetriesExhausted, "grpc call failed after its last attempt", slog.LevelWarn
		if span != nil {
			attrs = []attribute.KeyValue{attribute.Int(AttrAttempt, e.Attempt), attribute.Int(AttrRPCStatusCode, int(code))}
		}
	case interceptors.EventDeadline:
		t.rejections.Add(ctx, 1, a.reason(reasonDeadline).add...)
		name, msg, level = EventRetryDeadline, "grpc retry skipped: its wait would pass the call's deadline", slog.LevelInfo
		if span != nil {
			attrs = []attribute.KeyValue{attribute.Int(AttrAttempt, e.Attempt), attribute.Float64(AttrDelayMs, ms(e.Delay))}
		}
	case interceptors.EventBudgetDenied:
		t.rejections.Add(ctx, 1, a.reason(reasonBudget).add...)
		name, msg, level = EventBudgetDenied, "grpc retry denied by the retry budget", slog.LevelWarn
		if span != nil {
			attrs = []attribute.KeyValue{attribute.Int(AttrAttempt, e.Attempt)}
		}
	case interceptors.EventBreakerRejected:
		r := reasonBreakerOpen
		if e.BreakerState == breaker.HalfOpen {
			r = reasonBreakerHalfOpen
		}
		t.rejections.Add(ctx, 1, a.reason(r).add...)
		name, msg, failed = EventBreakerRejected, "grpc attempt rejected by the circuit breaker", true
		if span != nil {
			attrs = []attribute.KeyValue{attribute.Int(AttrAttempt, e.Attempt), attribute.String(AttrBreakerState, e.BreakerState.String())}
		}
	case interceptors.EventBulkheadRejected:
		t.rejections.Add(ctx, 1, a.reason(reasonBulkheadFull).add...)
		name, msg, failed = EventBulkheadRejected, "grpc attempt rejected by the bulkhead", true
		if span != nil {
			attrs = []attribute.KeyValue{attribute.Int(AttrAttempt, e.Attempt)}
		}
	case interceptors.EventRateLimited:
		t.clientLimited.Add(ctx, 1, a.baseOpt.add...)
		name, msg, failed = EventRateLimited, "grpc attempt refused by the client's rate limit", true
		if span != nil {
			attrs = []attribute.KeyValue{attribute.Int(AttrAttempt, e.Attempt)}
			if rl, ok := errors.AsType[*resilience.RateLimitedError](e.Err); ok {
				attrs = append(attrs, attribute.Float64(AttrRateLimitRetryAfter, ms(rl.RetryAfter)))
			}
		}
	case interceptors.EventThrottled:
		t.clientThrottled.Add(ctx, 1, a.baseOpt.add...)
		name, msg, failed = EventThrottled, "grpc attempt rejected by the client's adaptive throttle", true
		if span != nil {
			attrs = []attribute.KeyValue{attribute.Int(AttrAttempt, e.Attempt), attribute.Float64(AttrThrottleProbability, e.Probability)}
		}
	case interceptors.EventHedge:
		t.hedges.Add(ctx, 1, a.baseOpt.add...)
		name, msg = EventHedge, "grpc call hedged"
		if span != nil {
			attrs = []attribute.KeyValue{attribute.Int(AttrAttempt, e.Attempt), attribute.Float64(AttrDelayMs, ms(e.Delay))}
		}
	case interceptors.EventFallback:
		name, msg, level = EventFallback, "grpc call answered by its fallback", slog.LevelInfo
		if span != nil {
			attrs = []attribute.KeyValue{attribute.Int(AttrRPCStatusCode, int(code))}
		}
	default:
		return
	}
	if span != nil {
		if e.Err != nil {
			attrs = append(attrs, attribute.String(AttrError, e.Err.Error()))
		}
		span.AddEvent(name, trace.WithAttributes(attrs...))
		if failed {
			span.SetStatus(otelcodes.Error, e.Err.Error())
		}
	}
	if t.log.Enabled(ctx, level) {
		la := []slog.Attr{slog.String("method", e.Method), slog.Int("attempt", e.Attempt)}
		if e.Delay > 0 {
			la = append(la, slog.Duration("delay", e.Delay))
		}
		if e.Err != nil {
			la = append(la, slog.String("code", code.String()), slog.String("error", e.Err.Error()))
		}
		t.log.LogAttrs(ctx, level, msg, la...)
	}
}

// breakerChanged counts, remembers and logs a breaker's transition.
func (t *Telemetry) breakerChanged(ctx context.Context, sc breaker.StateChange) {
	t.mu.Lock()
	t.breakerStates[sc.Name] = sc.To
	t.mu.Unlock()
	t.transitions.Add(ctx, 1, metric.WithAttributes(
		attribute.String(AttrBreakerName, sc.Name),
		attribute.String(AttrBreakerFrom, sc.From.String()),
		attribute.String(AttrBreakerTo, sc.To.String())))
	level, msg := slog.LevelInfo, "circuit breaker "+sc.To.String()
	if sc.To == breaker.Open {
		level = slog.LevelWarn
	}
	if t.log.Enabled(ctx, level) {
		la := []slog.Attr{slog.String("breaker", sc.Name), slog.String("from", sc.From.String()),
			slog.String("to", sc.To.String()), slog.String("mode", sc.Mode.String()), slog.String("reason", sc.Reason.String())}
		if sc.OpenFor > 0 {
			la = append(la, slog.Duration("open_for", sc.OpenFor))
		}
		t.log.LogAttrs(ctx, level, msg, la...)
	}
}

// inject puts the trace context of ctx into a copy of its outgoing
// metadata, replacing the keys the propagator sets, as otelgrpc does.
func (t *Telemetry) inject(ctx context.Context) context.Context {
	md, ok := metadata.FromOutgoingContext(ctx)
	if !ok {
		md = metadata.MD{}
	}
	t.propagator().Inject(ctx, metadataCarrier(md))
	return metadata.NewOutgoingContext(ctx, md)
}

// metadataCarrier adapts gRPC metadata to a propagation.TextMapCarrier.
type metadataCarrier metadata.MD

func (c metadataCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c metadataCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// isExhausted reports whether err says that the call ran out of attempts.
func isExhausted(err error) bool {
	_, ok := errors.AsType[*resilience.RetriesExhaustedError](err)
	return ok
}

// errorDescription is the span status description of err: its gRPC status
// code and message.
func errorDescription(err error) string {
	st := status.Convert(err)
	if st.Code() == codes.OK {
		return err.Error()
	}
	return st.Code().String() + ": " + st.Message()
}

// ms converts d to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
