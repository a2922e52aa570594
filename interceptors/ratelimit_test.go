package interceptors_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// TestRateLimitFailsFast checks that an attempt over the client's rate
// fails at once with a local RESOURCE_EXHAUSTED matching ErrRateLimited and
// a wait, reaches no server, is not retried and does not count for the
// breaker.
func TestRateLimitFailsFast(t *testing.T) {
	var limited int
	c := newClient(t, interceptors.Config{
		Default: interceptors.Policy{
			Retry:     fastRetry(3),
			Breaker:   &interceptors.BreakerPolicy{},
			RateLimit: &interceptors.RateLimitPolicy{Rate: 0.001, Burst: 2}, // a permit every 1000 s
		},
		Observer: interceptors.Observer{OnEvent: func(_ context.Context, e interceptors.Event) {
			if e.Kind == interceptors.EventRateLimited {
				limited++
			}
		}},
	})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	for i := range 2 {
		if err := unary(ctx, e.client, testservice.Failing("ok", 0, codes.OK)); err != nil {
			t.Fatalf("call %d within the burst: %v", i+1, err)
		}
	}
	err := unary(ctx, e.client, testservice.Failing("over", 0, codes.OK))
	if status.Code(err) != codes.ResourceExhausted || !errors.Is(err, resilience.ErrRateLimited) {
		t.Fatalf("err %v, want RESOURCE_EXHAUSTED matching ErrRateLimited", err)
	}
	var rl *resilience.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter <= 0 || rl.RetryAfter > 1000*time.Second {
		t.Errorf("RateLimitedError %+v, want a wait in (0, 1000s]", rl)
	}
	if n := e.svc.Attempts("over"); n != 0 {
		t.Errorf("the limited call reached the server %d times", n)
	}
	if limited != 1 {
		t.Errorf("EventRateLimited heard %d times, want 1 (no retry of a local rejection)", limited)
	}
	m := c.Breaker(e.srv.Target(), testingv1.TestService_Unary_FullMethodName).Metrics()
	if m.Failures != 0 || m.Ignored != 1 || m.Successes != 2 {
		t.Errorf("breaker counted %+v, want 2 successes and the rejection ignored", m)
	}
}

// TestRateLimitScopes checks that each scope key has its own limiter: with
// ScopeMethod another method still has its burst, with ScopeTarget it does
// not.
func TestRateLimitScopes(t *testing.T) {
	for _, tc := range []struct {
		scope   interceptors.Scope
		otherOK bool
	}{
		{interceptors.ScopeMethod, true},
		{interceptors.ScopeTarget, false},
	} {
		t.Run(tc.scope.String(), func(t *testing.T) {
			c := newPipeline(t, interceptors.Policy{RateLimit: &interceptors.RateLimitPolicy{Rate: 0.001, Burst: 1, Scope: tc.scope}})
			e := newEnv(t, nil, c.UnaryClientInterceptor())
			ctx := ctxTimeout(t, 10*time.Second)
			if err := unary(ctx, e.client, testservice.Failing("a", 0, codes.OK)); err != nil {
				t.Fatal(err)
			}
			_, err := e.client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: testservice.Failing("b", 0, codes.OK)})
			if got := err == nil; got != tc.otherOK {
				t.Errorf("another method's call: err %v, want ok %v", err, tc.otherOK)
			}
		})
	}
}

// TestRateLimitWait checks that with Wait an attempt over the rate waits
// for its permit and goes through, and that one whose permit would come
// after the call's deadline fails at once without reaching the server.
func TestRateLimitWait(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{RateLimit: &interceptors.RateLimitPolicy{Rate: 50, Burst: 1, Wait: true}})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	for i := range 3 { // the second and third wait about 20 ms each
		if err := unary(ctx, e.client, testservice.Failing("waits", 0, codes.OK)); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	if n := e.svc.Attempts("waits"); n != 3 {
		t.Errorf("server saw %d attempts, want 3", n)
	}

	slow := newPipeline(t, interceptors.Policy{RateLimit: &interceptors.RateLimitPolicy{Rate: 0.01, Burst: 1, Wait: true}})
	e = newEnv(t, nil, slow.UnaryClientInterceptor())
	if err := unary(ctx, e.client, testservice.Failing("first", 0, codes.OK)); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 5*time.Second) // the next permit is 100 s away
	defer cancel()
	err := unary(short, e.client, testservice.Failing("late", 0, codes.OK))
	var rl *resilience.RateLimitedError
	if status.Code(err) != codes.ResourceExhausted || !errors.As(err, &rl) || rl.RetryAfter < 90*time.Second {
		t.Fatalf("err %v, want RESOURCE_EXHAUSTED with a RateLimitedError of about 100s", err)
	}
	if short.Err() != nil {
		t.Error("the call waited until its deadline instead of failing at once")
	}
	if n := e.svc.Attempts("late"); n != 0 {
		t.Errorf("the limited call reached the server %d times", n)
	}
}
