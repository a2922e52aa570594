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

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// The client's throttle rejecting an attempt leaves an event with the
// rejection probability and an error status on the call span (and no
// attempt span: nothing was sent), and counts in
// resilience.client.throttled by method only.
func TestClientThrottleTelemetry(t *testing.T) {
	r := newRig(t, rigConfig{policy: interceptors.Policy{Throttle: &interceptors.ThrottlePolicy{K: 1, MinRequests: 1}}})
	ctx := ctxTimeout(t, 10*time.Second)
	spans, throttled := 0, 0
	for i := 0; i < 200 && throttled == 0; i++ {
		_, err := r.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Failing(fmt.Sprint("c", i), -1, codes.Unavailable)})
		switch {
		case errors.Is(err, resilience.ErrThrottled):
			throttled++
			spans++ // the call span alone
		case err != nil:
			spans += 3 // the call, its attempt and the server span
		default:
			t.Fatalf("call %d succeeded", i)
		}
	}
	if throttled == 0 {
		t.Fatal("no call was throttled in 200 calls to a failing server")
	}
	all := r.spans.wait(t, spans)
	var rejected sdktrace.ReadOnlySpan
	for _, s := range byKind(all, trace.SpanKindClient, callName) {
		if slices.Contains(events(s), telemetry.EventThrottled) {
			rejected = s
		}
	}
	if rejected == nil {
		t.Fatal("no call span with a throttle event")
	}
	if rejected.Status().Code != otelcodes.Error || len(childrenOf(all, rejected)) != 0 {
		t.Errorf("throttled call: status %v, %d children; want error, none", rejected.Status(), len(childrenOf(all, rejected)))
	}
	for _, e := range rejected.Events() {
		if e.Name != telemetry.EventThrottled {
			continue
		}
		if p, ok := attr(e.Attributes, telemetry.AttrThrottleProbability); !ok || !(p.AsFloat64() > 0 && p.AsFloat64() < 1) {
			t.Errorf("probability %v, want in (0, 1)", p.AsFloat64())
		}
	}
	rm := r.collect(t)
	if got := total(t, rm, telemetry.MetricClientThrottled, service, unaryMethod); got != 1 {
		t.Errorf("%s = %d, want 1", telemetry.MetricClientThrottled, got)
	}
	for _, set := range pointAttrs(t, rm, telemetry.MetricClientThrottled) {
		if set.Len() != 3 {
			t.Errorf("%s has attributes %v, want rpc.system, rpc.service and rpc.method only", telemetry.MetricClientThrottled, set.ToSlice())
		}
	}
}
