package micro

import (
	"context"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafegrpc"
	mwretry "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/retry"
	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// answer is the reply the in-process invoker hands out.
var answer = &testingv1.Reply{CallId: "bench"}

// fill is an in-process invoker: it answers at once by filling the reply,
// allocating nothing, so that everything a benchmark allocates is the
// interceptor's.
func fill(_ context.Context, _ string, _, reply any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
	reply.(*testingv1.UnaryResponse).Reply = answer
	return nil
}

// bare is the interceptor-shaped baseline: it calls the invoker.
func bare(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(ctx, method, req, reply, cc, opts...)
}

// pipeline is one library's unary client interceptor.
type pipeline struct {
	lib string
	ic  grpc.UnaryClientInterceptor
}

// pipelines returns the unary client interceptors measured on the success
// path. Ours: retry (3 attempts, the default per-target budget) and
// breaker, then the same with a client bulkhead, which is the full
// pipeline. go-grpc-middleware retries nothing by default, so it gets 3
// attempts (WithMax(3)) and its other defaults. failsafe-go's interceptor
// runs its gRPC retry policy (3 attempts), alone and with its default
// breaker.
func pipelines(tb testing.TB) []pipeline {
	retryBreaker, err := interceptors.NewClient(interceptors.Config{Default: interceptors.Policy{
		Retry:   &interceptors.RetryPolicy{},
		Breaker: &interceptors.BreakerPolicy{},
	}})
	if err != nil {
		tb.Fatal(err)
	}
	full, err := interceptors.NewClient(interceptors.Config{Default: interceptors.Policy{
		Retry:    &interceptors.RetryPolicy{},
		Breaker:  &interceptors.BreakerPolicy{},
		Bulkhead: &interceptors.BulkheadPolicy{Limit: 1 << 20},
	}})
	if err != nil {
		tb.Fatal(err)
	}
	return []pipeline{
		{"bare", bare},
		{"ours-retry+breaker", retryBreaker.UnaryClientInterceptor()},
		{"ours-full", full.UnaryClientInterceptor()},
		{"go-grpc-middleware-retry", mwretry.UnaryClientInterceptor(mwretry.WithMax(3))},
		{"failsafe-go-retry", failsafegrpc.NewUnaryClientInterceptor[any](failsafegrpc.NewRetryPolicyBuilder[any]().Build())},
		{"failsafe-go-retry+breaker", failsafegrpc.NewUnaryClientInterceptor[any](
			failsafegrpc.NewRetryPolicyBuilder[any]().Build(), circuitbreaker.NewWithDefaults[any]())},
	}
}

// callerContext is the caller's context: with a deadline, as a gRPC caller
// should have, so that no library needs a timer of its own.
func callerContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	tb.Cleanup(cancel)
	return ctx
}

// BenchmarkUnaryPipeline measures a unary call whose first attempt succeeds
// over an in-process invoker, through each library's client interceptor.
// "bare" is the invoker alone.
func BenchmarkUnaryPipeline(b *testing.B) {
	ctx := callerContext(b)
	req := &testingv1.UnaryRequest{}
	for _, p := range pipelines(b) {
		b.Run(p.lib, func(b *testing.B) {
			b.ReportAllocs()
			var reply testingv1.UnaryResponse
			for b.Loop() {
				if err := p.ic(ctx, testingv1.TestService_Unary_FullMethodName, req, &reply, nil, fill); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnaryPipelineParallel is BenchmarkUnaryPipeline under
// RunParallel.
func BenchmarkUnaryPipelineParallel(b *testing.B) {
	ctx := callerContext(b)
	req := &testingv1.UnaryRequest{}
	for _, p := range pipelines(b) {
		b.Run(p.lib, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var reply testingv1.UnaryResponse
				for pb.Next() {
					if err := p.ic(ctx, testingv1.TestService_Unary_FullMethodName, req, &reply, nil, fill); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestPipelinesAnswer checks that every measured interceptor reaches the
// invoker and returns its reply, so the benchmark measures the success path.
func TestPipelinesAnswer(t *testing.T) {
	ctx := callerContext(t)
	for _, p := range pipelines(t) {
		var reply testingv1.UnaryResponse
		if err := p.ic(ctx, testingv1.TestService_Unary_FullMethodName, &testingv1.UnaryRequest{}, &reply, nil, fill); err != nil {
			t.Fatalf("%s: %v", p.lib, err)
		}
		if reply.GetReply().GetCallId() != "bench" {
			t.Errorf("%s: reply %v, want the invoker's", p.lib, &reply)
		}
	}
}

// TestOurPipelineAllocations checks that the full pipeline's success path
// allocates nothing beyond the invoker's.
func TestOurPipelineAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	ctx := callerContext(t)
	req := &testingv1.UnaryRequest{}
	for _, p := range pipelines(t) {
		if p.lib != "ours-full" {
			continue
		}
		var reply testingv1.UnaryResponse
		n := testing.AllocsPerRun(1000, func() {
			_ = p.ic(ctx, testingv1.TestService_Unary_FullMethodName, req, &reply, nil, fill)
		})
		if n > 0 {
			t.Errorf("%s: %v allocations per call, want none", p.lib, n)
		}
	}
}
