package interceptors_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// lateTimer is a context whose deadline has passed while the timer that
// would end it has not fired yet, as on a loaded machine: Deadline is in
// the past, Err is still nil.
type lateTimer struct {
	context.Context
	deadline time.Time
}

func (c lateTimer) Deadline() (time.Time, bool) { return c.deadline, true }

// TestPassedDeadlineNeverReachesTheServer checks that an attempt whose
// caller's deadline has passed never reaches the server, even before the
// context's timer fired: a first attempt that cannot wait in the pipeline
// goes straight to gRPC, whose transport refuses it; one that may wait for
// a bulkhead's queue is refused by the pipeline before it waits. Both end
// with DEADLINE_EXCEEDED.
func TestPassedDeadlineNeverReachesTheServer(t *testing.T) {
	policies := map[string]struct {
		p interceptors.Policy
		// admitted is what the bulkhead admitted: the pipeline does not
		// read the clock before a first attempt that cannot wait.
		admitted uint64
	}{
		"no wait": {interceptors.Policy{
			Retry:    fastRetry(3),
			Breaker:  &interceptors.BreakerPolicy{},
			Bulkhead: &interceptors.BulkheadPolicy{Limit: 4},
		}, 1},
		"bulkhead queue": {interceptors.Policy{
			Retry:    fastRetry(3),
			Bulkhead: &interceptors.BulkheadPolicy{Limit: 4, Queue: 4},
		}, 0},
	}
	for name, tc := range policies {
		t.Run(name, func(t *testing.T) {
			forTransports(t, func(t *testing.T, topts []testservice.Option) {
				c := newPipeline(t, tc.p)
				e := newEnv(t, topts, c.UnaryClientInterceptor())
				ctx := lateTimer{ctxTimeout(t, time.Minute), time.Now().Add(-time.Millisecond)}
				err := idempotentUnary(ctx, e.client, testservice.Failing("late", 0, codes.OK))
				if status.Code(err) != codes.DeadlineExceeded {
					t.Errorf("err %v, want DEADLINE_EXCEEDED", err)
				}
				if got := e.svc.Attempts("late"); got != 0 {
					t.Errorf("the server saw %d attempts, want none", got)
				}
				ms := c.Snapshot().Methods
				if len(ms) != 1 || ms[0].Bulkhead == nil || ms[0].Bulkhead.Metrics.Admitted != tc.admitted {
					t.Errorf("snapshot %+v, want a bulkhead that admitted %d", ms, tc.admitted)
				}
			})
		})
	}
}
