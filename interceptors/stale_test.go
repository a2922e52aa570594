package interceptors_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
)

// TestRetryDeadlineCheckAfterSlowObserver checks that the decision to
// retry measures the caller's remaining time when it is made, after the
// observer's hooks for the failed attempt ran, not when the attempt ended:
// a wait that no longer fits the deadline is not started (EventDeadline,
// the attempt's own status), rather than granted by the budget and cut
// short by the deadline. The policy has the default budget, which takes
// the time of an attempt's end.
func TestRetryDeadlineCheckAfterSlowObserver(t *testing.T) {
	const wait = time.Second
	var mu sync.Mutex
	var kinds []interceptors.EventKind
	deadline := time.Now().Add(2 * wait)
	c := newClient(t, interceptors.Config{
		Default: interceptors.Policy{Retry: &interceptors.RetryPolicy{
			MaxAttempts: 3,
			Backoff:     interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: wait},
			Jitter:      interceptors.JitterNone,
		}},
		Observer: interceptors.Observer{
			OnAttemptEnd: func(context.Context, interceptors.AttemptInfo, error) {
				// A slow hook: it returns when less than the backoff's
				// wait is left before the deadline.
				time.Sleep(time.Until(deadline.Add(-wait / 2)))
			},
			OnEvent: func(_ context.Context, e interceptors.Event) {
				mu.Lock()
				defer mu.Unlock()
				kinds = append(kinds, e.Kind)
			},
		},
	})
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	unavailable := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return status.Error(codes.Unavailable, "down")
	}
	err := c.UnaryClientInterceptor()(ctx, "/stale.Svc/M", nil, nil, nil, unavailable)
	if status.Code(err) != codes.Unavailable {
		t.Errorf("err %v, want the attempt's UNAVAILABLE", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(kinds) != 1 || kinds[0] != interceptors.EventDeadline {
		t.Errorf("events %v, want one EventDeadline", kinds)
	}
}
