package interceptors_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// checkOpen checks that err is an open circuit's rejection: UNAVAILABLE,
// matching resilience.ErrCircuitOpen and *breaker.OpenError.
func checkOpen(t *testing.T, err error) {
	t.Helper()
	if status.Code(err) != codes.Unavailable {
		t.Errorf("err %v, want UNAVAILABLE", err)
	}
	if !errors.Is(err, resilience.ErrCircuitOpen) {
		t.Errorf("err %v does not match ErrCircuitOpen", err)
	}
	if _, ok := errors.AsType[*breaker.OpenError](err); !ok {
		t.Errorf("err %v does not match *breaker.OpenError", err)
	}
}

// TestBreakerOpensAndRejectsWithoutServerHit checks that consecutive
// failures open the method's breaker, after which calls fail fast without
// reaching the server, while another method keeps its own closed breaker.
func TestBreakerOpensAndRejectsWithoutServerHit(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		c := newPipeline(t, interceptors.Policy{Breaker: &interceptors.BreakerPolicy{FailureThreshold: 3, OpenDuration: time.Hour}})
		e := newEnv(t, topts, c.UnaryClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		for range 3 {
			if err := unary(ctx, e.client, testservice.Failing("f", -1, codes.Internal)); status.Code(err) != codes.Internal {
				t.Fatalf("err %v, want INTERNAL", err)
			}
		}
		if s := c.Breaker(e.srv.Target(), testingv1.TestService_Unary_FullMethodName).State(); s != breaker.Open {
			t.Fatalf("breaker %v after 3 failures, want open", s)
		}
		before := e.svc.TotalAttempts()
		checkOpen(t, unary(ctx, e.client, testservice.Failing("rejected", 0, codes.OK)))
		if got := e.svc.TotalAttempts(); got != before {
			t.Errorf("server saw %d attempts while the circuit was open", got-before)
		}
		// Another method has its own breaker (ScopeMethod).
		if err := idempotentUnary(ctx, e.client, testservice.Failing("other", 0, codes.OK)); err != nil {
			t.Errorf("other method: %v", err)
		}
	})
}

// TestBreakerRejectionIsNotRetried checks that a retry loop stops at the
// breaker's rejection instead of retrying it.
func TestBreakerRejectionIsNotRetried(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{
		Retry:   fastRetry(5),
		Breaker: &interceptors.BreakerPolicy{FailureThreshold: 2, OpenDuration: time.Hour},
	})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	err := unary(ctxTimeout(t, 10*time.Second), e.client, testservice.Failing("r", -1, codes.Unavailable))
	checkOpen(t, err)
	if got := e.svc.Attempts("r"); got != 2 {
		t.Errorf("server saw %d attempts, want 2 (the breaker opened after them)", got)
	}
	if _, ok := errors.AsType[*resilience.RetriesExhaustedError](err); ok {
		t.Errorf("rejection reported as exhausted retries: %v", err)
	}
}

// TestBreakerHalfOpenRecovery checks that an open breaker half-opens after
// its open duration, lets probes through to the server, and closes after enough
// successful probes.
func TestBreakerHalfOpenRecovery(t *testing.T) {
	changes := make(chan breaker.StateChange, 16)
	c := newClient(t, interceptors.Config{
		Default: interceptors.Policy{Breaker: &interceptors.BreakerPolicy{
			FailureThreshold: 2,
			OpenDuration:     100 * time.Millisecond,
			SuccessThreshold: 2,
		}},
		Observer: interceptors.Observer{OnEvent: func(_ context.Context, e interceptors.Event) {
			if e.Kind == interceptors.EventBreakerStateChange {
				changes <- e.StateChange
			}
		}},
	})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	for range 2 {
		_ = unary(ctx, e.client, testservice.Failing("down", -1, codes.Unavailable))
	}
	if sc := waitFor(t, changes, 5*time.Second, "open"); sc.To != breaker.Open {
		t.Fatalf("first change %+v, want to open", sc)
	}
	checkOpen(t, unary(ctx, e.client, testservice.Failing("early", 0, codes.OK)))
	if e.svc.Attempts("early") != 0 {
		t.Fatal("a call reached the server while open")
	}

	// The breaker half-opens when its state is looked at after OpenDuration.
	b := c.Breaker(e.srv.Target(), testingv1.TestService_Unary_FullMethodName)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for b.State() != breaker.HalfOpen {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("the breaker never half-opened")
		}
	}
	if sc := waitFor(t, changes, 5*time.Second, "half-open"); sc.To != breaker.HalfOpen || sc.Reason != breaker.ReasonTimeoutElapsed {
		t.Fatalf("change %+v, want half-open after the timeout", sc)
	}
	for i := range 2 {
		if err := unary(ctx, e.client, testservice.Failing("probe", 0, codes.OK)); err != nil {
			t.Fatalf("probe %d: %v", i+1, err)
		}
	}
	if got := e.svc.Attempts("probe"); got != 2 {
		t.Errorf("server saw %d probes, want 2", got)
	}
	if sc := waitFor(t, changes, 5*time.Second, "closed"); sc.To != breaker.Closed || sc.Reason != breaker.ReasonProbesSucceeded {
		t.Errorf("change %+v, want closed after the probes", sc)
	}
}

// TestBreakerScopes checks that ScopeService and ScopeTarget share one
// breaker between methods.
func TestBreakerScopes(t *testing.T) {
	for _, scope := range []interceptors.Scope{interceptors.ScopeService, interceptors.ScopeTarget} {
		t.Run(scope.String(), func(t *testing.T) {
			c := newPipeline(t, interceptors.Policy{Breaker: &interceptors.BreakerPolicy{Scope: scope, FailureThreshold: 1, OpenDuration: time.Hour}})
			e := newEnv(t, nil, c.UnaryClientInterceptor())
			ctx := ctxTimeout(t, 10*time.Second)
			_ = unary(ctx, e.client, testservice.Failing("x", -1, codes.Internal))
			checkOpen(t, idempotentUnary(ctx, e.client, testservice.Failing("y", 0, codes.OK)))
			if c.Breaker(e.srv.Target(), testingv1.TestService_Unary_FullMethodName) != c.Breaker(e.srv.Target(), testingv1.TestService_Query_FullMethodName) {
				t.Error("two methods have different breakers")
			}
		})
	}
}

// TestBulkheadRejects checks that a full client bulkhead rejects with
// RESOURCE_EXHAUSTED matching ErrBulkheadFull, without a server hit, that
// the rejection is neither retried nor counted by the breaker, and that a
// queued call is rejected after MaxWait.
func TestBulkheadRejects(t *testing.T) {
	for _, queue := range []int{0, 1} {
		t.Run(map[int]string{0: "no queue", 1: "max wait"}[queue], func(t *testing.T) {
			c := newPipeline(t, interceptors.Policy{
				Retry:    fastRetry(3),
				Breaker:  &interceptors.BreakerPolicy{},
				Bulkhead: &interceptors.BulkheadPolicy{Limit: 1, Queue: queue, MaxWait: 30 * time.Millisecond},
			})
			e := newEnv(t, nil, c.UnaryClientInterceptor())
			ctx := ctxTimeout(t, 10*time.Second)
			slow := make(chan error, 1)
			go func() { slow <- unary(ctx, e.client, testservice.Sleeping("slow", 500*time.Millisecond, 0)) }()
			if err := e.svc.WaitAttempts(ctx, "slow", 1); err != nil {
				t.Fatal(err)
			}
			err := unary(ctx, e.client, testservice.Failing("shed", 0, codes.OK))
			if status.Code(err) != codes.ResourceExhausted || !errors.Is(err, resilience.ErrBulkheadFull) {
				t.Errorf("err %v, want RESOURCE_EXHAUSTED matching ErrBulkheadFull", err)
			}
			if e.svc.Attempts("shed") != 0 {
				t.Error("a rejected call reached the server")
			}
			if err := <-slow; err != nil {
				t.Fatal(err)
			}
			m := c.Breaker(e.srv.Target(), testingv1.TestService_Unary_FullMethodName).Metrics()
			if m.Failures != 0 || m.Ignored != 1 {
				t.Errorf("breaker counted %+v, want the rejection ignored", m)
			}
		})
	}
}
