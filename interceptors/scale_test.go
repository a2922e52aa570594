package interceptors_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
)

// answerAtOnce is an in-process invoker that succeeds at once.
func answerAtOnce(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return nil
}

// TestStateHoldsManyKeys checks that a client whose MaxKeys allows it keeps
// the state of 10^5 methods, each with a breaker of its own, evicting
// nothing; and that beyond MaxKeys new methods evict idle states, one per
// new method, without ever sharing the overflow breaker.
func TestStateHoldsManyKeys(t *testing.T) {
	const n = 100_000
	var evicted, overflowed atomic.Int64
	c := newClient(t, interceptors.Config{
		MaxKeys: n,
		Default: interceptors.Policy{
			Retry:    &interceptors.RetryPolicy{},
			Breaker:  &interceptors.BreakerPolicy{},
			Bulkhead: &interceptors.BulkheadPolicy{Limit: 8},
		},
		Observer: interceptors.Observer{OnEvent: func(_ context.Context, e interceptors.Event) {
			switch {
			case e.Kind == interceptors.EventEvicted && e.Cache == "state":
				evicted.Add(1)
			case e.Kind == interceptors.EventOverflow:
				overflowed.Add(1)
			}
		}},
	})
	ic := c.UnaryClientInterceptor()
	ctx := ctxTimeout(t, 5*time.Minute)
	method := func(i int) string { return "/scale.Svc/M" + strconv.Itoa(i) }
	breakers := make([]*breaker.Breaker, n)
	for i := range n {
		if err := ic(ctx, method(i), nil, nil, nil, answerAtOnce); err != nil {
			t.Fatal(err)
		}
		breakers[i] = c.Breaker("", method(i))
	}
	if e, o := evicted.Load(), overflowed.Load(); e != 0 || o != 0 {
		t.Fatalf("after %d methods within MaxKeys: %d evicted, %d overflowed, want none", n, e, o)
	}
	seen := make(map[*breaker.Breaker]bool, n)
	for i, b := range breakers {
		if b == nil || seen[b] || c.Breaker("", method(i)) != b {
			t.Fatalf("%s: breaker %p, want one of its own that stays", method(i), b)
		}
		seen[b] = true
	}

	const beyond = 1000
	for i := n; i < n+beyond; i++ {
		if err := ic(ctx, method(i), nil, nil, nil, answerAtOnce); err != nil {
			t.Fatal(err)
		}
	}
	if e, o := evicted.Load(), overflowed.Load(); e != beyond || o != 0 {
		t.Errorf("after %d methods beyond MaxKeys: %d evicted, %d overflowed, want %d and 0", beyond, e, o, beyond)
	}
	if a, b := c.Breaker("", method(n+beyond-2)), c.Breaker("", method(n+beyond-1)); a == nil || a == b {
		t.Errorf("the last two new methods' breakers are %p and %p, want one each", a, b)
	}
}
