package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"strings"
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
// OnCallEnd and the call's events. It is itself that context: the
// call's context with the state as the value of callKey, in one
// allocation.
type callState struct {
	context.Context
	start time.Time
	span  trace.Span // nil when not recording
	attrs *methodAttrs
}

// Value returns the state for callKey and asks the parent otherwise.
func (cs *callState) Value(key any) any {
	if _, ok := key.(callKey); ok {
		return cs
	}
	return cs.Context.Value(key)
}

// attemptState is what OnAttemptStart leaves in the attempt's context for
// OnAttemptEnd. Like callState, it is that context.
type attemptState struct {
	context.Context
	start time.Time
	span  trace.Span // nil when not recording
	attrs *methodAttrs
	// carrier receives what the propagator injects.
	carrier pairCarrier
}

// Value returns the state for attemptKey and asks the parent otherwise.
func (as *attemptState) Value(key any) any {
	if _, ok := key.(attemptKey); ok {
		return as
	}
	return as.Context.Value(key)
}

type callKey struct{}

type attemptKey struct{}

func callStateOf(ctx context.Context) *callState {
	cs, _ := ctx.Value(callKey{}).(*callState)
	return cs
}

// clientSpan is the start option of the call's and the attempts' spans,
// built once: an option in an interface allocates.
var clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

// callStart starts the call's span, a child of the span in ctx.
func (o clientObserver) callStart(ctx context.Context, info interceptors.CallInfo) context.Context {
	t := o.t
	if t.noop {
		return ctx
	}
	tracer := t.currentTracer()
	if tracer == nil && !t.callDuration.Enabled(ctx) {
		return ctx // nothing to measure: callEnd finds no state
	}
	a := t.attrsOf(info.Method)
	cs := &callState{start: time.Now(), attrs: a}
	if tracer != nil {
		var span trace.Span
		ctx, span = tracer.Start(ctx, a.callName, clientSpan...)
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
	cs.Context = ctx
	return cs
}

// callEnd ends the call's span and records its duration.
func (o clientObserver) callEnd(ctx context.Context, info interceptors.CallInfo, err error) {
	t := o.t
	if t.noop {
		return
	}
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
	if t.noop {
		return ctx
	}
	a := t.attrsOf(info.Method)
	t.activeAttempts.Add(ctx, 1, a.baseOpt.add...)
	if info.BulkheadWait > 0 {
		t.bulkheadWait.Record(ctx, info.BulkheadWait.Seconds(), a.baseOpt.rec...)
	}
	tracer := t.currentTracer()
	if tracer == nil && !t.attemptDuration.Enabled(ctx) {
		return ctx // nothing to measure: attemptEnd only counts
	}
	as := &attemptState{start: time.Now(), attrs: a}
	if tracer != nil {
		var span trace.Span
		ctx, span = tracer.Start(ctx, a.attemptName, clientSpan...)
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
		// An unsampled span's context is injected too, with its sampled
		// flag off, so that the server's sampling follows the client's.
		if span.SpanContext().IsValid() {
			ctx = t.inject(ctx, &as.carrier)
		}
	}
	as.Context = ctx
	return as
}

// attemptEnd ends the attempt's span and counts the attempt.
func (o clientObserver) attemptEnd(ctx context.Context, info interceptors.AttemptInfo, err error) {
	t := o.t
	if t.noop {
		t.logAttemptFailed(ctx, info, err)
		return
	}
	as, _ := ctx.Value(attemptKey{}).(*attemptState)
	var a *methodAttrs
	if as != nil {
		a = as.attrs
	} else {
		a = t.attrsOf(info.Method)
	}
	code := status.Code(err)
	opts := a.code(code)
	t.activeAttempts.Add(ctx, -1, a.baseOpt.add...)
	t.attempts.Add(ctx, 1, opts.add...)
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
	t.logAttemptFailed(ctx, info, err)
}

// logAttemptFailed logs a failed attempt at Debug.
func (t *Telemetry) logAttemptFailed(ctx context.Context, info interceptors.AttemptInfo, err error) {
	if err != nil && t.log.Enabled(ctx, slog.LevelDebug) {
		t.log.LogAttrs(ctx, slog.LevelDebug, "grpc attempt failed",
			slog.String("method", info.Method), slog.Int("attempt", info.Attempt),
			slog.String("code", status.Code(err).String()), slog.String("error", err.Error()))
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

// inject puts the trace context of ctx into its outgoing metadata,
// replacing the keys the propagator sets, as otelgrpc does. The
// propagator writes into c; when the outgoing metadata has none of the
// keys it wrote, which is the usual case, they are appended to it without
// copying it, and otherwise it is copied and the keys replaced.
func (t *Telemetry) inject(ctx context.Context, c *pairCarrier) context.Context {
	c.kv = c.buf[:0]
	t.propagator().Inject(ctx, c)
	if len(c.kv) == 0 {
		return ctx
	}
	for i := 0; i < len(c.kv); i += 2 {
		if metadata.ValueFromOutgoingContext(ctx, c.kv[i]) != nil {
			md, _ := metadata.FromOutgoingContext(ctx)
			for i := 0; i < len(c.kv); i += 2 {
				md.Set(c.kv[i], c.kv[i+1])
			}
			return metadata.NewOutgoingContext(ctx, md)
		}
	}
	return metadata.AppendToOutgoingContext(ctx, c.kv...)
}

// pairCarrier is the propagation.TextMapCarrier inject hands the
// propagator: the keys it sets, lower-cased as gRPC metadata keys are,
// and their values, in order, a key set twice keeping its last value.
// Its buffer holds the pairs of W3C Trace Context and Baggage without
// allocating.
type pairCarrier struct {
	kv  []string // key, value, key, value...
	buf [6]string
}

func (c *pairCarrier) Get(key string) string {
	key = strings.ToLower(key)
	for i := 0; i < len(c.kv); i += 2 {
		if c.kv[i] == key {
			return c.kv[i+1]
		}
	}
	return ""
}

func (c *pairCarrier) Set(key, value string) {
	key = strings.ToLower(key)
	for i := 0; i < len(c.kv); i += 2 {
		if c.kv[i] == key {
			c.kv[i+1] = value
			return
		}
	}
	c.kv = append(c.kv, key, value)
}

func (c *pairCarrier) Keys() []string {
	keys := make([]string, 0, len(c.kv)/2)
	for i := 0; i < len(c.kv); i += 2 {
		keys = append(keys, c.kv[i])
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
