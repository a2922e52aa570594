package interceptors_test

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// mallocsPerCall returns the mean number of heap allocations the whole
// process made per call of fn over n calls, with one P as
// testing.AllocsPerRun does, but unrounded: a real call also allocates on
// the server's and the transport's goroutines, so the figure is a mean.
func mallocsPerCall(n int, fn func()) float64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	fn() // warm up
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		fn()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(n)
}

// TestLoopbackAllocationsBeyondBare checks that the full pipeline (retry
// with the default per-target budget, breaker and bulkhead) adds at most
// one allocation to a real gRPC call's own on the success path: the copy
// of the trailer gRPC makes for the pushback the pipeline reads. Bare and
// piped calls alternate in rounds, and the medians are compared, so that
// the server's and the transport's occasional allocations (flow control,
// timers) fall on both alike.
func TestLoopbackAllocationsBeyondBare(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	full := newPipeline(t, interceptors.Policy{
		Retry:    &interceptors.RetryPolicy{},
		Breaker:  &interceptors.BreakerPolicy{},
		Bulkhead: &interceptors.BulkheadPolicy{Limit: 1 << 20},
	})
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			srv := testservice.StartTB(t, tr.opts...)
			bare := srv.Client(t, grpc.WithDisableRetry())
			ours := srv.Client(t, grpc.WithDisableRetry(), grpc.WithUnaryInterceptor(full.UnaryClientInterceptor()))
			ctx := ctxTimeout(t, time.Minute)
			req := &testingv1.IdempotentUnaryRequest{Payload: []byte("ping")}
			call := func(c testingv1.TestServiceClient) func() {
				return func() {
					if _, err := c.IdempotentUnary(ctx, req); err != nil {
						t.Fatal(err)
					}
				}
			}
			var b, o []float64
			for range 5 {
				b = append(b, mallocsPerCall(300, call(bare)))
				o = append(o, mallocsPerCall(300, call(ours)))
			}
			slices.Sort(b)
			slices.Sort(o)
			mb, mo := b[len(b)/2], o[len(o)/2]
			t.Logf("allocations per call: bare %.2f, full pipeline %.2f", mb, mo)
			if mo-mb > 1.5 {
				t.Errorf("the full pipeline adds %.2f allocations per call to a real call's %.2f, want at most 1", mo-mb, mb)
			}
		})
	}
}
