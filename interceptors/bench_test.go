package interceptors_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// answer is the reply the in-process invoker hands out.
var answer = &testingv1.Reply{CallId: "bench"}

// fill is an in-process invoker: it answers at once by filling the reply.
func fill(_ context.Context, _ string, _, reply any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
	reply.(*testingv1.UnaryResponse).Reply = answer
	return nil
}

// fullPolicy sets every pattern that runs on a unary call's success path.
func fullPolicy() interceptors.Policy {
	return interceptors.Policy{
		Retry:          fastRetry(3),
		Breaker:        &interceptors.BreakerPolicy{},
		Throttle:       &interceptors.ThrottlePolicy{},
		Bulkhead:       &interceptors.BulkheadPolicy{Limit: 1 << 20},
		DefaultTimeout: time.Minute,
		Fallback:       &interceptors.FallbackPolicy{Func: func(_ context.Context, _ string, _, _ any, err error) error { return err }},
	}
}

// nopObserver is an Observer whose every hook does nothing, so that the
// pipeline takes its observed path at the cost of the calls alone.
func nopObserver() interceptors.Observer {
	return interceptors.Observer{
		OnCallStart:    func(ctx context.Context, _ interceptors.CallInfo) context.Context { return ctx },
		OnCallEnd:      func(context.Context, interceptors.CallInfo, error) {},
		OnAttemptStart: func(ctx context.Context, _ interceptors.AttemptInfo) context.Context { return ctx },
		OnAttemptEnd:   func(context.Context, interceptors.AttemptInfo, error) {},
		OnEvent:        func(context.Context, interceptors.Event) {},
	}
}

// pipelines are the configurations measured on the success path.
func pipelines(tb testing.TB) []struct {
	name string
	ctx  context.Context // the caller's
	ic   grpc.UnaryClientInterceptor
} {
	withDeadline, cancel := context.WithTimeout(context.Background(), time.Hour)
	tb.Cleanup(cancel)
	timeout := fullPolicy()
	timeout.Retry.AttemptTimeout = time.Minute
	budget := fullPolicy()
	budget.Retry.Budget = nil // the client's per-target RatioBudget
	subscribed := newClient(tb, interceptors.Config{Default: fullPolicy(), Observer: nopObserver()})
	tb.Cleanup(subscribed.Subscribe(nopObserver())) // two observers: the fan-out
	hedge := fullPolicy()
	hedge.Retry, hedge.Hedging = nil, &interceptors.HedgingPolicy{Delay: time.Hour, Budget: interceptors.NoBudget}
	hedge.Idempotency = interceptors.AlwaysIdempotent
	return []struct {
		name string
		ctx  context.Context
		ic   grpc.UnaryClientInterceptor
	}{
		{"pipeline", withDeadline, newPipeline(tb, fullPolicy()).UnaryClientInterceptor()},
		{"pipeline+budget", withDeadline, newPipeline(tb, budget).UnaryClientInterceptor()},
		{"pipeline+observer", withDeadline, newClient(tb, interceptors.Config{Default: fullPolicy(), Observer: nopObserver()}).UnaryClientInterceptor()},
		{"pipeline+observer+subscriber", withDeadline, subscribed.UnaryClientInterceptor()},
		{"pipeline+attempt-timeout", withDeadline, newPipeline(tb, timeout).UnaryClientInterceptor()},
		{"pipeline+default-timeout", context.Background(), newPipeline(tb, fullPolicy()).UnaryClientInterceptor()},
		{"hedging", withDeadline, newPipeline(tb, hedge).UnaryClientInterceptor()},
	}
}

// BenchmarkUnarySuccess measures a call whose first attempt succeeds over
// an in-process invoker: bare, then through the pipeline in several
// configurations. The difference to "bare" is the pipeline's cost.
func BenchmarkUnarySuccess(b *testing.B) {
	req := &testingv1.UnaryRequest{}
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		ctx := context.Background()
		var reply testingv1.UnaryResponse
		var invoker grpc.UnaryInvoker = fill // called as the pipeline calls it
		for b.Loop() {
			if err := invoker(ctx, testingv1.TestService_Unary_FullMethodName, req, &reply, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, p := range pipelines(b) {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			var reply testingv1.UnaryResponse
			for b.Loop() {
				if err := p.ic(p.ctx, testingv1.TestService_Unary_FullMethodName, req, &reply, nil, fill); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSuccessPathAllocations checks the allocations of a successful first
// attempt through the pipeline: none with every pattern (the caller having
// a deadline), one context per timeout the pipeline sets.
func TestSuccessPathAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocations")
	}
	want := map[string]float64{
		"pipeline":          0,
		"pipeline+budget":   0,
		"pipeline+observer": 0,
		// Config.Observer and one subscriber.
		"pipeline+observer+subscriber": 0,
		// context.WithTimeoutCause: the context, its timer and the timer's
		// func, the cancel func.
		"pipeline+attempt-timeout": 4,
		// The same, plus the new context's Done channel, which the
		// bulkhead asks for (the caller's context had made its own).
		"pipeline+default-timeout": 5,
	}
	req := &testingv1.UnaryRequest{}
	for _, p := range pipelines(t) {
		limit, ok := want[p.name]
		if !ok {
			continue
		}
		var reply testingv1.UnaryResponse
		got := testing.AllocsPerRun(200, func() {
			if err := p.ic(p.ctx, testingv1.TestService_Unary_FullMethodName, req, &reply, nil, fill); err != nil {
				t.Fatal(err)
			}
		})
		if got > limit {
			t.Errorf("%s: %v allocations per call, want at most %v", p.name, got, limit)
		}
	}
}
