package interceptors_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
	"github.com/engineeringlabs/grpc-resilience/throttle"
)

// flaky is a server interceptor that, while failing is set, fails every
// other attempt it sees with UNAVAILABLE, before the handler runs.
type flaky struct {
	failing atomic.Bool
	n       atomic.Uint64
}

func (f *flaky) interceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if f.failing.Load() && f.n.Add(1)%2 == 0 {
			return nil, status.Error(codes.Unavailable, "overloaded")
		}
		return handler(ctx, req)
	}
}

// checkThrottled checks that err is a throttle's rejection: UNAVAILABLE,
// matching resilience.ErrThrottled, and not an exhausted retry.
func checkThrottled(t *testing.T, err error) {
	t.Helper()
	if status.Code(err) != codes.Unavailable || !errors.Is(err, resilience.ErrThrottled) {
		t.Fatalf("err %v, want UNAVAILABLE matching ErrThrottled", err)
	}
	if re, ok := errors.AsType[*throttle.RejectedError](err); !ok || !(re.Probability > 0 && re.Probability < 1) {
		t.Fatalf("err %v, want a *throttle.RejectedError cause with its probability", err)
	}
	if _, ok := errors.AsType[*resilience.RetriesExhaustedError](err); ok {
		t.Fatalf("a throttled attempt was retried: %v", err)
	}
}

// TestThrottleSheds drives a backend that refuses half of what it gets:
// the client's throttle (K 1.5, so it acts once fewer than 2 in 3 are
// accepted) starts rejecting attempts itself, so that the attempts
// reaching the server drop, without retrying its own rejections; when the
// backend recovers, the throttle lets traffic back in. The window is an
// hour, so that nothing leaves it during the test: the throttle's
// decisions follow the counts alone, and each phase is bounded by a
// number of calls, not by time.
func TestThrottleSheds(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		var f flaky
		f.failing.Store(true)
		var throttledEvents atomic.Int64
		c := newClient(t, interceptors.Config{
			Default: interceptors.Policy{
				Retry:    fastRetry(3),
				Throttle: &interceptors.ThrottlePolicy{K: 1.5, Window: time.Hour, Buckets: 10, MinRequests: 10},
			},
			Observer: interceptors.Observer{OnEvent: func(_ context.Context, e interceptors.Event) {
				if e.Kind == interceptors.EventThrottled {
					re, ok := errors.AsType[*throttle.RejectedError](e.Err)
					if !(e.Probability > 0 && e.Probability < 1) || !errors.Is(e.Err, resilience.ErrThrottled) || !ok || re.Probability != e.Probability {
						t.Errorf("EventThrottled with probability %v, err %v: want the probability drawn against", e.Probability, e.Err)
					}
					throttledEvents.Add(1)
				}
			}},
		})
		topts = append([]testservice.Option{testservice.WithServerOptions(grpc.ChainUnaryInterceptor(f.interceptor()))}, topts...)
		e := newEnv(t, topts, c.UnaryClientInterceptor())
		ctx := ctxTimeout(t, 60*time.Second)

		// batch makes n calls and returns how many the throttle rejected
		// at their first attempt, and how many attempts reached the
		// server.
		call := 0
		batch := func(n int) (throttledFirst, reached int) {
			before := e.svc.TotalAttempts()
			for range n {
				call++
				id := fmt.Sprint("c", call)
				err := unary(ctx, e.client, testservice.Failing(id, 0, codes.OK))
				if errors.Is(err, resilience.ErrThrottled) {
					checkThrottled(t, err)
					if e.svc.Attempts(id) == 0 {
						throttledFirst++
					}
				}
			}
			return throttledFirst, int(e.svc.TotalAttempts() - before)
		}

		// Overload: the server accepts half of what it gets, less than
		// 1/K, so the throttle rejects more and more; within a bounded
		// number of calls, most calls are rejected on the client and the
		// server sees few attempts.
		for i := 0; ; i++ {
			thr, reached := batch(200)
			if thr > 150 && reached < 100 {
				t.Logf("engaged after %d batches", i+1)
				break
			}
			if i == 20 {
				t.Fatalf("throttle did not engage in 4000 calls: last batch of 200 calls: %d throttled, %d attempts reached the server", thr, reached)
			}
		}
		if throttledEvents.Load() == 0 {
			t.Fatal("no EventThrottled")
		}
		snap := c.Snapshot()
		if len(snap.Methods) != 1 || snap.Methods[0].Throttle == nil {
			t.Fatalf("snapshot has no throttle: %+v", snap.Methods)
		}
		ts := snap.Methods[0].Throttle
		if ts.Scope != interceptors.ScopeMethod || ts.Key != e.srv.Target()+testingv1.TestService_Unary_FullMethodName ||
			ts.Metrics.Probability < 0.5 || ts.Metrics.Rejected == 0 || ts.Metrics.K != 1.5 {
			t.Fatalf("throttle snapshot %+v", ts)
		}
		if len(snap.Policies) != 1 || snap.Policies[0].OverflowThrottle == nil || snap.Policies[0].OverflowThrottle.Requests != 0 {
			t.Fatalf("policy snapshot %+v, want an unused overflow throttle", snap.Policies)
		}

		// Recovery: as the server accepts every attempt again, the accepts
		// outgrow the requests over K and the throttle lets all traffic
		// back in.
		f.failing.Store(false)
		for i := 0; ; i++ {
			thr, reached := batch(200)
			if thr == 0 && reached == 200 {
				t.Logf("recovered after %d batches", i+1)
				break
			}
			if i == 100 {
				t.Fatalf("throttle did not let traffic back in within 20000 calls: last batch: %d throttled, %d reached", thr, reached)
			}
		}
	})
}

// TestThrottleIgnoresLocalRejections checks that attempts a rate limit
// further in refuses never count for the throttle: they never reached the
// server.
func TestThrottleIgnoresLocalRejections(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{
		Throttle:  &interceptors.ThrottlePolicy{MinRequests: 1},
		RateLimit: &interceptors.RateLimitPolicy{Rate: 0.001, Burst: 1},
	})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	if err := unary(ctx, e.client, testservice.Failing("ok", 0, codes.OK)); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := unary(ctx, e.client, testservice.Failing(fmt.Sprint("limited", i), 0, codes.OK)); !errors.Is(err, resilience.ErrRateLimited) {
			t.Fatalf("err %v, want the rate limit's", err)
		}
	}
	m := c.Snapshot().Methods[0].Throttle.Metrics
	if m.Requests != 1 || m.Accepts != 1 {
		t.Fatalf("throttle counted %d/%d, want the one answered attempt", m.Requests, m.Accepts)
	}
}

// TestThrottleSharedScope checks that ScopeTarget shares one throttle
// between methods, and that its key is the target.
func TestThrottleSharedScope(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{Throttle: &interceptors.ThrottlePolicy{Scope: interceptors.ScopeTarget}})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	if err := unary(ctx, e.client, testservice.Failing("a", 0, codes.OK)); err != nil {
		t.Fatal(err)
	}
	if err := idempotentUnary(ctx, e.client, testservice.Failing("b", -1, codes.Internal)); status.Code(err) != codes.Internal {
		t.Fatal(err)
	}
	snap := c.Snapshot()
	if len(snap.Methods) != 2 {
		t.Fatalf("%d methods", len(snap.Methods))
	}
	for _, m := range snap.Methods {
		if m.Throttle.Key != e.srv.Target() || m.Throttle.Metrics.Requests != 2 || m.Throttle.Metrics.Accepts != 1 {
			t.Fatalf("%s: throttle %+v, want the target's, 2 requests and 1 accept", m.Method, m.Throttle)
		}
	}
}

// TestThrottleIgnoresIgnoredCodes: a code the table's breaker column
// ignores (ABORTED, by default) counts for the throttle no more than for
// the breaker.
func TestThrottleIgnoresIgnoredCodes(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{Throttle: &interceptors.ThrottlePolicy{MinRequests: 1}})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	for i := range 5 {
		if err := unary(ctx, e.client, testservice.Failing(fmt.Sprint("aborted", i), -1, codes.Aborted)); status.Code(err) != codes.Aborted {
			t.Fatalf("err %v, want ABORTED", err)
		}
	}
	if m := c.Snapshot().Methods[0].Throttle.Metrics; m.Requests != 0 {
		t.Fatalf("throttle counted %d requests (%d accepts) of ignored codes, want none", m.Requests, m.Accepts)
	}
}

// TestThrottleUsesBreakerTable: without a table of its own, the throttle
// judges the server's answers with the policy's breaker's table.
func TestThrottleUsesBreakerTable(t *testing.T) {
	tab := classify.Default().With(codes.NotFound, classify.Rule{Retry: classify.RetryNever, Breaker: classify.BreakerFailure})
	c := newPipeline(t, interceptors.Policy{
		Breaker:  &interceptors.BreakerPolicy{Table: &tab},
		Throttle: &interceptors.ThrottlePolicy{MinRequests: 1},
	})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	if err := unary(ctx, e.client, testservice.Failing("nf", -1, codes.NotFound)); status.Code(err) != codes.NotFound {
		t.Fatalf("err %v, want NOT_FOUND", err)
	}
	if m := c.Snapshot().Methods[0].Throttle.Metrics; m.Requests != 1 || m.Accepts != 0 {
		t.Fatalf("throttle counted %d/%d, want NOT_FOUND as a refusal, as the breaker counts it", m.Requests, m.Accepts)
	}
}

func TestThrottlePolicyValidate(t *testing.T) {
	err := interceptors.Policy{Throttle: &interceptors.ThrottlePolicy{K: 0.5, Window: -1, Buckets: -1, MinRequests: -1, PassInterval: -1, Scope: 9}}.Validate()
	got := map[string]bool{}
	for _, fe := range resilience.FieldErrors(err) {
		got[fe.Field] = true
	}
	for _, f := range []string{"Throttle.K", "Throttle.Window", "Throttle.Buckets", "Throttle.MinRequests", "Throttle.PassInterval", "Throttle.Scope"} {
		if !got[f] {
			t.Errorf("no error on %s in %v", f, err)
		}
	}
}

// TestStreamThrottle checks that streams count for the throttle as unary
// calls do (a failed stream is refused, a successful one accepted, a
// cancelled one not at all) and are rejected, without reaching the server,
// once the throttle engages.
func TestStreamThrottle(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		c := newPipeline(t, interceptors.Policy{Throttle: &interceptors.ThrottlePolicy{K: 1, MinRequests: 1}})
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		ctx := ctxTimeout(t, 30*time.Second)
		metrics := func() (uint64, uint64) {
			m := c.Snapshot().Methods[0].Throttle.Metrics
			return m.Requests, m.Accepts
		}

		st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: testservice.Failing("ok", 0, codes.OK)})
		if err == nil {
			_, err = recvAll(st.Recv)
		}
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		st, err = e.client.ServerStream(cctx, &testingv1.ServerStreamRequest{Behavior: testservice.Sleeping("cancel", time.Minute, 0)})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.svc.WaitAttempts(ctx, "cancel", 1); err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := recvAll(st.Recv); status.Code(err) != codes.Canceled {
			t.Fatalf("cancelled stream: %v", err)
		}
		if r, a := metrics(); r != 1 || a != 1 {
			t.Fatalf("after a stream and a cancelled one: %d requests, %d accepts; want 1, 1", r, a)
		}

		throttled := false
		for i := 0; i < 200 && !throttled; i++ {
			st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: testservice.Failing(fmt.Sprint("f", i), -1, codes.Unavailable)})
			if err == nil {
				_, err = recvAll(st.Recv)
			}
			switch {
			case errors.Is(err, resilience.ErrThrottled):
				checkThrottled(t, err)
				if got := e.svc.Attempts(fmt.Sprint("f", i)); got != 0 {
					t.Fatalf("a throttled stream reached the server %d times", got)
				}
				throttled = true
			case status.Code(err) != codes.Unavailable:
				t.Fatalf("stream %d: %v", i, err)
			}
		}
		if !throttled {
			t.Fatal("no stream was throttled in 200 failing streams")
		}
	})
}

// TestStreamRateLimitSinglePattern checks that a stream with no retry,
// breaker or bulkhead still takes its permit from the client's rate limit.
func TestStreamRateLimitSinglePattern(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{RateLimit: &interceptors.RateLimitPolicy{Rate: 0.001, Burst: 1}})
	e := newStreamEnv(t, nil, c.StreamClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	for i, want := range []error{nil, resilience.ErrRateLimited} {
		st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: testservice.Failing(fmt.Sprint("s", i), 0, codes.OK)})
		if err == nil {
			_, err = recvAll(st.Recv)
		}
		if !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Fatalf("stream %d: %v, want %v", i, err, want)
		}
	}
}
