package telemetry_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

const (
	// callName and attemptName are the names of this package's spans, as
	// gRFC A72 names them; otelgrpc names its client and server spans
	// rpcName, after the RPC semantic conventions.
	callName    = "Sent.grpcresilience.testing.v1.TestService.Unary"
	attemptName = "Attempt.grpcresilience.testing.v1.TestService.Unary"
	rpcName     = "grpcresilience.testing.v1.TestService/Unary"
)

// checkRetriedTrace asserts the tree of a call whose first two attempts
// failed with UNAVAILABLE: one call span, three attempt spans under it
// numbered 1..3 with their status codes, and under each attempt exactly one
// server span, directly (set-up without otelgrpc on the client) or through
// otelgrpc's client span. It returns the call span.
func checkRetriedTrace(t *testing.T, spans []sdktrace.ReadOnlySpan, clientOTelGRPC bool) sdktrace.ReadOnlySpan {
	t.Helper()
	calls := byKind(spans, trace.SpanKindClient, callName)
	if len(calls) != 1 {
		t.Fatalf("got %d call spans, want 1", len(calls))
	}
	call := calls[0]
	attempts := childrenOf(spans, call)
	if len(attempts) != 3 {
		t.Fatalf("call span has %d children, want 3 attempts", len(attempts))
	}
	slices.SortFunc(attempts, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	for i, a := range attempts {
		if a.Name() != attemptName {
			t.Errorf("child %d of the call is %q, want %q", i, a.Name(), attemptName)
		}
		n, _ := attr(a.Attributes(), telemetry.AttrAttempt)
		code, _ := attr(a.Attributes(), telemetry.AttrRPCStatusCode)
		wantCode, wantStatus := int64(codes.Unavailable), otelcodes.Error
		if i == 2 {
			wantCode, wantStatus = int64(codes.OK), otelcodes.Unset
		}
		if n.AsInt64() != int64(i+1) || code.AsInt64() != wantCode || a.Status().Code != wantStatus {
			t.Errorf("attempt span %d: attempt %v, code %v, status %v; want %d, %d, %v", i, n.AsInt64(), code.AsInt64(), a.Status().Code, i+1, wantCode, wantStatus)
		}
		if svc, _ := attr(a.Attributes(), telemetry.AttrRPCService); svc.AsString() != "grpcresilience.testing.v1.TestService" {
			t.Errorf("attempt span %d: rpc.service %q", i, svc.AsString())
		}
		below := childrenOf(spans, a)
		if clientOTelGRPC {
			if len(below) != 1 || below[0].SpanKind() != trace.SpanKindClient || below[0].Name() != rpcName {
				t.Fatalf("attempt %d has %d children, want otelgrpc's client span %q", i+1, len(below), rpcName)
			}
			below = childrenOf(spans, below[0])
		}
		if len(below) != 1 || below[0].SpanKind() != trace.SpanKindServer {
			t.Fatalf("attempt %d: %d server spans below it, want 1", i+1, len(below))
		}
	}
	if got := byKind(spans, trace.SpanKindServer, rpcName); len(got) != 3 {
		t.Errorf("got %d server spans, want 3", len(got))
	}
	if got, want := events(call), []string{telemetry.EventRetry, telemetry.EventRetry}; !slices.Equal(got, want) {
		t.Errorf("call span events %v, want %v", got, want)
	}
	n, _ := attr(call.Attributes(), telemetry.AttrAttempts)
	outcome, _ := attr(call.Attributes(), telemetry.AttrOutcome)
	if n.AsInt64() != 3 || outcome.AsString() != "ok" || call.Status().Code != otelcodes.Unset {
		t.Errorf("call span: attempts %d, outcome %q, status %v; want 3, ok, unset", n.AsInt64(), outcome.AsString(), call.Status().Code)
	}
	return call
}

// TestSpansPerAttempt runs a call that succeeds on its third attempt, with
// and without otelgrpc's client stats handler, over both transports, and
// checks the span tree: no duplicate call span, attempts under the call,
// server spans under their attempts (so the trace context was injected per
// attempt), and the span count (nothing extra).
func TestSpansPerAttempt(t *testing.T) {
	for _, tr := range transports {
		for _, withOTelGRPC := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/otelgrpc-client=%t", tr.name, withOTelGRPC), func(t *testing.T) {
				r := newRig(t, rigConfig{policy: interceptors.Policy{Retry: fastRetry(3)}, clientOTelGRPC: withOTelGRPC, transport: tr.opts})
				if _, err := r.client.Unary(ctxTimeout(t, 10*time.Second), &testingv1.UnaryRequest{Behavior: testservice.Failing("c", 2, codes.Unavailable)}); err != nil {
					t.Fatal(err)
				}
				want := 1 + 3 + 3 // call, attempts, server spans
				if withOTelGRPC {
					want += 3 // otelgrpc's client span per attempt
				}
				spans := r.spans.wait(t, want)
				if len(spans) != want {
					t.Fatalf("got %d spans, want %d", len(spans), want)
				}
				checkRetriedTrace(t, spans, withOTelGRPC)
			})
		}
	}
}

// TestAttemptAttributes checks the resilience attributes of attempts: the
// delay before a retry, the breaker's state, the attempt timeout, the
// pushback the server sent and whether it was honoured.
func TestAttemptAttributes(t *testing.T) {
	r := newRig(t, rigConfig{policy: interceptors.Policy{
		Retry:   &interceptors.RetryPolicy{MaxAttempts: 2, Backoff: fastRetry(2).Backoff, Jitter: fastRetry(2).Jitter, Budget: interceptors.NoBudget, AttemptTimeout: 5 * time.Second},
		Breaker: &interceptors.BreakerPolicy{},
	}})
	b := testservice.Failing("p", 1, codes.Unavailable)
	b.PushbackMs = "3"
	if _, err := r.client.Unary(ctxTimeout(t, 10*time.Second), &testingv1.UnaryRequest{Behavior: b}); err != nil {
		t.Fatal(err)
	}
	spans := r.spans.wait(t, 5)
	attempts := byKind(spans, trace.SpanKindClient, attemptName)
	slices.SortFunc(attempts, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	if len(attempts) != 2 {
		t.Fatalf("got %d attempt spans, want 2", len(attempts))
	}
	type row struct {
		delay, pushback, timeout float64
		honoured                 bool
		breaker                  string
	}
	get := func(s sdktrace.ReadOnlySpan) row {
		var x row
		v, _ := attr(s.Attributes(), telemetry.AttrDelayMs)
		x.delay = v.AsFloat64()
		v, _ = attr(s.Attributes(), telemetry.AttrServerPushback)
		x.pushback = v.AsFloat64()
		v, _ = attr(s.Attributes(), telemetry.AttrTimeoutMs)
		x.timeout = v.AsFloat64()
		v, _ = attr(s.Attributes(), telemetry.AttrPushbackHonoured)
		x.honoured = v.AsBool()
		v, _ = attr(s.Attributes(), telemetry.AttrBreakerState)
		x.breaker = v.AsString()
		return x
	}
	if got, want := get(attempts[0]), (row{delay: 0, pushback: 3, timeout: 5000, breaker: "closed"}); got != want {
		t.Errorf("first attempt %+v, want %+v", got, want)
	}
	if got, want := get(attempts[1]), (row{delay: 3, timeout: 5000, honoured: true, breaker: "closed"}); got != want {
		t.Errorf("second attempt %+v, want %+v", got, want)
	}
}

// TestBreakerRejectionSpan lets two failures open the breaker: the third
// attempt is rejected without reaching the server, which shows as an event
// on the call span with an error status, and no third attempt span.
func TestBreakerRejectionSpan(t *testing.T) {
	r := newRig(t, rigConfig{policy: interceptors.Policy{
		Retry:   fastRetry(3),
		Breaker: &interceptors.BreakerPolicy{FailureThreshold: 2, OpenDuration: time.Hour},
	}})
	_, err := r.client.Unary(ctxTimeout(t, 10*time.Second), &testingv1.UnaryRequest{Behavior: testservice.Failing("b", -1, codes.Unavailable)})
	if !errors.Is(err, resilience.ErrCircuitOpen) {
		t.Fatalf("call error %v, want one matching ErrCircuitOpen", err)
	}
	spans := r.spans.wait(t, 1+2+2)
	calls := byKind(spans, trace.SpanKindClient, callName)
	if len(calls) != 1 {
		t.Fatalf("got %d call spans, want 1", len(calls))
	}
	call := calls[0]
	if got := len(byKind(spans, trace.SpanKindClient, attemptName)); got != 2 {
		t.Errorf("got %d attempt spans, want 2 (the third was rejected)", got)
	}
	if got, want := events(call), []string{telemetry.EventRetry, telemetry.EventRetry, telemetry.EventBreakerRejected}; !slices.Equal(got, want) {
		t.Errorf("call span events %v, want %v", got, want)
	}
	ev := call.Events()[2]
	st, _ := attr(ev.Attributes, telemetry.AttrBreakerState)
	n, _ := attr(ev.Attributes, telemetry.AttrAttempt)
	if st.AsString() != "open" || n.AsInt64() != 3 {
		t.Errorf("rejection event: state %q attempt %d, want open 3", st.AsString(), n.AsInt64())
	}
	code, _ := attr(call.Attributes(), telemetry.AttrRPCStatusCode)
	if call.Status().Code != otelcodes.Error || code.AsInt64() != int64(codes.Unavailable) {
		t.Errorf("call span status %v code %d, want error and UNAVAILABLE", call.Status(), code.AsInt64())
	}
}

// TestBulkheadRejectionSpan holds the client bulkhead's only slot with a
// call parked in the server; the next call is rejected, with an event and
// an error status on its call span and no attempt span.
func TestBulkheadRejectionSpan(t *testing.T) {
	r := newRig(t, rigConfig{policy: interceptors.Policy{Bulkhead: &interceptors.BulkheadPolicy{Limit: 1}}})
	ctx := ctxTimeout(t, 10*time.Second)
	release := r.hold(t, ctx)
	_, err := r.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "rejected"}})
	if !errors.Is(err, resilience.ErrBulkheadFull) {
		t.Fatalf("second call error %v, want one matching ErrBulkheadFull", err)
	}
	release()
	spans := r.spans.wait(t, 1+3) // the rejected call; the held call, its attempt and server span
	var rejected sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == callName && s.SpanKind() == trace.SpanKindClient && slices.Contains(events(s), telemetry.EventBulkheadRejected) {
			rejected = s
		}
	}
	if rejected == nil {
		t.Fatal("no call span with a bulkhead rejection event")
	}
	if rejected.Status().Code != otelcodes.Error || len(childrenOf(spans, rejected)) != 0 {
		t.Errorf("rejected call: status %v, %d children; want error, none", rejected.Status(), len(childrenOf(spans, rejected)))
	}
	if r.srv.Service().Attempts("rejected") != 0 {
		t.Errorf("the rejected call reached the server")
	}
}

// TestHedgeSpans checks that the attempts of a hedged call, which run
// concurrently, are children of the one call span and that the extra one
// is marked as a hedge.
func TestHedgeSpans(t *testing.T) {
	r := newRig(t, rigConfig{policy: interceptors.Policy{Hedging: &interceptors.HedgingPolicy{
		MaxExtraAttempts: 1, NonFatalCodes: []codes.Code{codes.Unavailable}, Budget: interceptors.NoBudget,
	}}})
	// Sent at once, both attempts fail non-fatally the first time, then
	// the call fails: two attempt spans, under one call span.
	_, err := r.client.IdempotentUnary(ctxTimeout(t, 10*time.Second), &testingv1.IdempotentUnaryRequest{Behavior: testservice.Failing("h", -1, codes.Unavailable)})
	if err == nil {
		t.Fatal("hedged call succeeded, want it to fail")
	}
	const name = "Sent.grpcresilience.testing.v1.TestService.IdempotentUnary"
	spans := r.spans.wait(t, 1+2+2)
	calls := byKind(spans, trace.SpanKindClient, name)
	if len(calls) != 1 {
		t.Fatalf("got %d call spans, want 1", len(calls))
	}
	attempts := childrenOf(spans, calls[0])
	hedges := 0
	for _, a := range attempts {
		if h, _ := attr(a.Attributes(), telemetry.AttrHedge); h.AsBool() {
			hedges++
		}
	}
	if len(attempts) != 2 || hedges != 1 {
		t.Errorf("call has %d attempt spans, %d of them hedges; want 2 and 1", len(attempts), hedges)
	}
	if !slices.Contains(events(calls[0]), telemetry.EventHedge) {
		t.Errorf("call span events %v lack %s", events(calls[0]), telemetry.EventHedge)
	}
	if outcome, _ := attr(calls[0].Attributes(), telemetry.AttrOutcome); outcome.AsString() != "retries_exhausted" {
		t.Errorf("outcome %q, want retries_exhausted", outcome.AsString())
	}
}

// TestServerSpanEvents has the server interceptors shed a call, reject one
// for its deadline and inject a fault, and checks the event each leaves on
// the server span (otelgrpc's, found in the handler's context).
func TestServerSpanEvents(t *testing.T) {
	// serverSpanEvent waits for a server span with the event name, looking
	// again each time another span ends after the first n: a server span
	// may end a moment after the client has its answer.
	serverSpanEvent := func(t *testing.T, r *rig, n int, name string) sdktrace.Event {
		t.Helper()
		for ; ; n++ {
			spans, err := r.spans.waitFor(n)
			if err != nil {
				t.Fatalf("no server span has a %s event: %v", name, err)
			}
			for _, s := range spans {
				if s.SpanKind() != trace.SpanKindServer {
					continue
				}
				for _, e := range s.Events() {
					if e.Name == name {
						return e
					}
				}
			}
		}
	}
	t.Run("shed", func(t *testing.T) {
		r := newRig(t, rigConfig{server: server.Config{Bulkhead: server.BulkheadConfig{Limit: 1}}})
		ctx := ctxTimeout(t, 10*time.Second)
		release := r.hold(t, ctx)
		_, err := r.client.Unary(ctx, &testingv1.UnaryRequest{})
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("second call: %v, want RESOURCE_EXHAUSTED", err)
		}
		release()
		e := serverSpanEvent(t, r, 4, telemetry.EventShed)
		if code, _ := attr(e.Attributes, telemetry.AttrRPCStatusCode); code.AsInt64() != int64(codes.ResourceExhausted) {
			t.Errorf("shed event code %d", code.AsInt64())
		}
	})
	t.Run("deadline", func(t *testing.T) {
		r := newRig(t, rigConfig{server: server.Config{Deadline: server.DeadlineConfig{MinRemaining: time.Hour}}})
		_, err := r.client.Unary(ctxTimeout(t, 10*time.Second), &testingv1.UnaryRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("call: %v, want DEADLINE_EXCEEDED", err)
		}
		e := serverSpanEvent(t, r, 2, telemetry.EventDeadlineRejected)
		if rem, _ := attr(e.Attributes, telemetry.AttrRemainingMs); rem.AsFloat64() <= 0 || rem.AsFloat64() > 10000 {
			t.Errorf("remaining %vms, want in (0, 10000]", rem.AsFloat64())
		}
		if r.srv.Service().TotalAttempts() != 0 {
			t.Error("the rejected call reached the handler")
		}
	})
	t.Run("fault", func(t *testing.T) {
		r := newRig(t, rigConfig{server: server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{All: server.Fault{ErrorRate: 1, Code: codes.Unavailable}}}}})
		_, err := r.client.Unary(ctxTimeout(t, 10*time.Second), &testingv1.UnaryRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("call: %v, want UNAVAILABLE", err)
		}
		e := serverSpanEvent(t, r, 2, telemetry.EventFault)
		if kind, _ := attr(e.Attributes, telemetry.AttrFaultKind); kind.AsString() != "error" {
			t.Errorf("fault kind %q, want error", kind.AsString())
		}
	})
}
