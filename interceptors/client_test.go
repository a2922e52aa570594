package interceptors_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// TestNewClientIdempotencyCheck checks that NewClient refuses a method
// policy that would repeat calls of a method whose descriptor declares no
// idempotency (hedging, or a retried per-attempt timeout), that
// Idempotency: AlwaysIdempotent opts in and then repeats the calls, and
// that a method declared idempotent needs no opt-in.
func TestNewClientIdempotencyCheck(t *testing.T) {
	const (
		unaryM = testingv1.TestService_Unary_FullMethodName
		idemM  = testingv1.TestService_IdempotentUnary_FullMethodName
	)
	timed := func() *interceptors.RetryPolicy {
		r := fastRetry(3)
		r.AttemptTimeout = 100 * time.Millisecond
		return r
	}
	for _, tc := range []struct {
		name   string
		policy func() interceptors.Policy
		field  string
	}{
		{"Hedging", func() interceptors.Policy { return interceptors.Policy{Hedging: hedging(1, 0)} }, "Hedging"},
		{"Retry.AttemptTimeout", func() interceptors.Policy { return interceptors.Policy{Retry: timed()} }, "Retry.AttemptTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Refused on Unary, which declares no idempotency_level.
			_, err := interceptors.NewClient(interceptors.Config{Methods: map[string]interceptors.Policy{unaryM: tc.policy()}})
			fes := resilience.FieldErrors(err)
			if len(fes) != 1 {
				t.Fatalf("NewClient: %d problems (%v), want 1", len(fes), err)
			}
			if want := "Methods[" + unaryM + "]." + tc.field; fes[0].Field != want {
				t.Errorf("Field %q, want %q", fes[0].Field, want)
			}
			if !strings.Contains(fes[0].Error(), "AlwaysIdempotent") {
				t.Errorf("%v does not say how to opt in", fes[0])
			}

			// Accepted with the opt-in, and the slow first attempt is
			// repeated: the second attempt answers.
			opted := tc.policy()
			opted.Idempotency = interceptors.AlwaysIdempotent
			c := newClient(t, interceptors.Config{Methods: map[string]interceptors.Policy{unaryM: opted}})
			e := newEnv(t, nil, c.UnaryClientInterceptor())
			ctx := ctxTimeout(t, 10*time.Second)
			resp, err := e.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Sleeping("opted", 5*time.Second, 1)})
			if err != nil || resp.GetReply().GetAttempt() != 2 {
				t.Errorf("opted in: %v, %v; want attempt 2 to answer", resp.GetReply(), err)
			}

			// Accepted on IdempotentUnary without opt-in, and repeated.
			c = newClient(t, interceptors.Config{Methods: map[string]interceptors.Policy{idemM: tc.policy()}})
			e = newEnv(t, nil, c.UnaryClientInterceptor())
			resp2, err := e.client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: testservice.Sleeping("idem", 5*time.Second, 1)})
			if err != nil || resp2.GetReply().GetAttempt() != 2 {
				t.Errorf("idempotent by descriptor: %v, %v; want attempt 2 to answer", resp2.GetReply(), err)
			}
		})
	}
}

// retryDelays runs one call that fails with UNAVAILABLE on every attempt
// through a client whose default policy retries with r, over an
// in-process invoker, and returns the Delay of every EventRetry.
func retryDelays(t *testing.T, r interceptors.RetryPolicy) []time.Duration {
	t.Helper()
	var mu sync.Mutex
	var delays []time.Duration
	r.Budget = interceptors.NoBudget
	c := newClient(t, interceptors.Config{
		Default: interceptors.Policy{Retry: &r},
		Observer: interceptors.Observer{OnEvent: func(_ context.Context, e interceptors.Event) {
			if e.Kind == interceptors.EventRetry {
				mu.Lock()
				delays = append(delays, e.Delay)
				mu.Unlock()
			}
		}},
	})
	failing := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return status.Error(codes.Unavailable, "down")
	}
	err := c.UnaryClientInterceptor()(ctxTimeout(t, 10*time.Second), testingv1.TestService_Unary_FullMethodName, nil, nil, nil, failing)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err %v, want UNAVAILABLE", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return delays
}

// TestRetryBackoffAsData checks that the Backoff and JitterKind of a
// RetryPolicy make the waits they describe, as the Observer hears them: a
// constant 20ms without jitter waits exactly 20ms each time, linear and
// exponential grow as configured, and the jitters stay in their ranges.
func TestRetryBackoffAsData(t *testing.T) {
	const ms = time.Millisecond
	exact := func(want ...time.Duration) func(int, time.Duration) bool {
		return func(i int, d time.Duration) bool { return d == want[i] }
	}
	for _, tc := range []struct {
		name  string
		r     interceptors.RetryPolicy
		waits int
		ok    func(i int, d time.Duration) bool // the i-th wait, from 0
	}{
		{"constant", interceptors.RetryPolicy{MaxAttempts: 4,
			Backoff: interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: 20 * ms}, Jitter: interceptors.JitterNone},
			3, exact(20*ms, 20*ms, 20*ms)},
		{"linear", interceptors.RetryPolicy{MaxAttempts: 4,
			Backoff: interceptors.Backoff{Kind: interceptors.BackoffLinear, Initial: 10 * ms, Step: 5 * ms}, Jitter: interceptors.JitterNone},
			3, exact(10*ms, 15*ms, 20*ms)},
		{"exponential", interceptors.RetryPolicy{MaxAttempts: 4,
			Backoff: interceptors.Backoff{Initial: 2 * ms, Multiplier: 3, Max: 10 * ms}, Jitter: interceptors.JitterNone},
			3, exact(2*ms, 6*ms, 10*ms)},
		{"equal jitter", interceptors.RetryPolicy{MaxAttempts: 6,
			Backoff: interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: 20 * ms}, Jitter: interceptors.JitterEqual},
			5, func(_ int, d time.Duration) bool { return d >= 10*ms && d <= 20*ms }},
		{"proportional jitter", interceptors.RetryPolicy{MaxAttempts: 6,
			Backoff: interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: 20 * ms}, Jitter: interceptors.JitterProportional, JitterFactor: 0.5},
			5, func(_ int, d time.Duration) bool { return d >= 10*ms && d <= 30*ms }},
		{"full jitter, the zero value", interceptors.RetryPolicy{MaxAttempts: 6,
			Backoff: interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: 20 * ms}},
			5, func(_ int, d time.Duration) bool { return d >= 0 && d < 20*ms }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			delays := retryDelays(t, tc.r)
			if len(delays) != tc.waits {
				t.Fatalf("waits %v, want %d", delays, tc.waits)
			}
			for i, d := range delays {
				if !tc.ok(i, d) {
					t.Errorf("wait %d is %v (all: %v)", i+1, d, delays)
				}
			}
		})
	}
}

// TestBreakerOpenDuration checks that BreakerPolicy.OpenDuration is how
// long the breaker stays open, and that zero means the 60s default.
func TestBreakerOpenDuration(t *testing.T) {
	const method = testingv1.TestService_Unary_FullMethodName
	failing := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return status.Error(codes.Internal, "bug")
	}
	for _, tc := range []struct {
		open     time.Duration
		min, max time.Duration // of OpenRemaining right after opening
	}{
		{2 * time.Second, time.Nanosecond, 2 * time.Second},
		{0, 2 * time.Second, breaker.DefaultTimeout},
	} {
		t.Run(fmt.Sprint(tc.open), func(t *testing.T) {
			c := newPipeline(t, interceptors.Policy{Breaker: &interceptors.BreakerPolicy{FailureThreshold: 1, OpenDuration: tc.open}})
			_ = c.UnaryClientInterceptor()(ctxTimeout(t, 10*time.Second), method, nil, nil, nil, failing)
			m := c.Breaker("", method).Metrics()
			if m.State != breaker.Open {
				t.Fatalf("breaker %v after a failure, want open", m.State)
			}
			if m.OpenRemaining < tc.min || m.OpenRemaining > tc.max {
				t.Errorf("OpenRemaining %v, want in [%v, %v]", m.OpenRemaining, tc.min, tc.max)
			}
		})
	}
}

// keyCounter counts the events and attempts a bounded-state test needs.
type keyCounter struct {
	mu        sync.Mutex
	evicted   map[string]int // per Cache
	evictKeys map[string]bool
	overflow  map[string]int
	attempts  atomic.Int64
	guarded   atomic.Int64 // attempts with AttemptInfo.Breaker
}

func newKeyCounter() *keyCounter {
	return &keyCounter{evicted: map[string]int{}, evictKeys: map[string]bool{}, overflow: map[string]int{}}
}

func (k *keyCounter) observer() interceptors.Observer {
	return interceptors.Observer{
		OnAttemptStart: func(ctx context.Context, info interceptors.AttemptInfo) context.Context {
			k.attempts.Add(1)
			if info.Breaker {
				k.guarded.Add(1)
			}
			return ctx
		},
		OnEvent: func(_ context.Context, e interceptors.Event) {
			k.mu.Lock()
			defer k.mu.Unlock()
			switch e.Kind {
			case interceptors.EventEvicted:
				k.evicted[e.Cache]++
				k.evictKeys[e.Key] = true
			case interceptors.EventOverflow:
				k.overflow[e.Cache]++
			}
		},
	}
}

// invokeUnknown calls n distinct methods the test service does not have,
// which it answers with UNIMPLEMENTED (a success for the breaker).
func invokeUnknown(t *testing.T, ctx context.Context, conn *grpc.ClientConn, prefix string, n int) {
	t.Helper()
	for i := range n {
		method := fmt.Sprintf("/grpcresilience.testing.v1.TestService/%s%d", prefix, i)
		err := conn.Invoke(ctx, method, &testingv1.UnaryRequest{}, &testingv1.UnaryResponse{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("%s: err %v, want UNIMPLEMENTED", method, err)
		}
	}
}

// TestBoundedStateKeepsProtection checks that a client bounds the state it
// keeps per method, whatever the number of method names it sees, without
// ever running a call unprotected: idle states (with the breakers they
// own) are evicted to make room, every attempt has a breaker, an open
// breaker is never evicted, when every breaker is in use a new method
// shares the overflow breaker, and a breaker shared by a service stays one
// breaker however many keys flow past it.
func TestBoundedStateKeepsProtection(t *testing.T) {
	const maxKeys = 8
	t.Run("evicts idle", func(t *testing.T) {
		k := newKeyCounter()
		c := newClient(t, interceptors.Config{
			Default:  interceptors.Policy{Breaker: &interceptors.BreakerPolicy{}},
			MaxKeys:  maxKeys,
			Observer: k.observer(),
		})
		e := newEnv(t, nil, c.UnaryClientInterceptor())
		const n = 1000
		invokeUnknown(t, ctxTimeout(t, 30*time.Second), e.conn, "M", n)
		k.mu.Lock()
		defer k.mu.Unlock()
		// n distinct keys and at least n-maxKeys evictions leave at most
		// maxKeys states, each owning its breaker.
		if k.evicted["state"] < n-maxKeys {
			t.Errorf("evictions %v, want at least %d states", k.evicted, n-maxKeys)
		}
		if len(k.overflow) != 0 {
			t.Errorf("overflows %v with only idle breakers to evict", k.overflow)
		}
		if a, g := k.attempts.Load(), k.guarded.Load(); a != n || g != n {
			t.Errorf("%d attempts, %d with a breaker; want %d, all guarded", a, g, n)
		}
	})

	t.Run("keeps open breakers", func(t *testing.T) {
		k := newKeyCounter()
		c := newClient(t, interceptors.Config{
			Default:  interceptors.Policy{Breaker: &interceptors.BreakerPolicy{FailureThreshold: 1, OpenDuration: time.Hour}},
			MaxKeys:  maxKeys,
			Observer: k.observer(),
		})
		e := newEnv(t, nil, c.UnaryClientInterceptor())
		ctx := ctxTimeout(t, 30*time.Second)
		if err := unary(ctx, e.client, testservice.Failing("open", -1, codes.Internal)); status.Code(err) != codes.Internal {
			t.Fatalf("err %v, want INTERNAL", err)
		}
		brk := c.Breaker(e.srv.Target(), testingv1.TestService_Unary_FullMethodName)
		if brk.State() != breaker.Open {
			t.Fatalf("breaker %v, want open", brk.State())
		}
		invokeUnknown(t, ctx, e.conn, "Flood", 1000)

		checkOpen(t, unary(ctx, e.client, testservice.Failing("after", 0, codes.OK)))
		if e.svc.Attempts("after") != 0 {
			t.Error("a call reached the server through an open breaker")
		}
		if got := c.Breaker(e.srv.Target(), testingv1.TestService_Unary_FullMethodName); got != brk {
			t.Error("the open breaker was replaced by another")
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.evictKeys[e.srv.Target()+testingv1.TestService_Unary_FullMethodName] {
			t.Error("the open breaker was evicted")
		}
		if k.evicted["state"] < 1000-maxKeys {
			t.Errorf("%d states evicted, want at least %d", k.evicted["state"], 1000-maxKeys)
		}
	})

	t.Run("overflow when every breaker is open", func(t *testing.T) {
		k := newKeyCounter()
		c := newClient(t, interceptors.Config{
			Default:  interceptors.Policy{Breaker: &interceptors.BreakerPolicy{FailureThreshold: 1, OpenDuration: time.Hour}},
			MaxKeys:  2,
			Observer: k.observer(),
		})
		e := newEnv(t, nil, c.UnaryClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		_ = unary(ctx, e.client, testservice.Failing("u", -1, codes.Internal))
		_ = idempotentUnary(ctx, e.client, testservice.Failing("i", -1, codes.Internal))
		before := k.guarded.Load()
		if err := query(ctx, e.client, testservice.Failing("q", 0, codes.OK)); err != nil {
			t.Fatalf("a call sharing the overflow breaker: %v", err)
		}
		if k.guarded.Load() != before+1 {
			t.Error("the call past the cap ran without a breaker")
		}
		k.mu.Lock()
		overflows := k.overflow["state"]
		k.mu.Unlock()
		if overflows != 1 {
			t.Errorf("%d state overflows, want 1", overflows)
		}
		// Both open breakers are still there and still reject.
		checkOpen(t, unary(ctx, e.client, testservice.Failing("u2", 0, codes.OK)))
		checkOpen(t, idempotentUnary(ctx, e.client, testservice.Failing("i2", 0, codes.OK)))
	})

	t.Run("a service's breaker stays one", func(t *testing.T) {
		k := newKeyCounter()
		c := newClient(t, interceptors.Config{
			Default:  interceptors.Policy{Breaker: &interceptors.BreakerPolicy{Scope: interceptors.ScopeService}},
			MaxKeys:  2,
			Observer: k.observer(),
		})
		e := newEnv(t, nil, c.UnaryClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		target := e.srv.Target()
		for i := range 50 { // other services' keys, and this service's methods, in turns
			if err := unary(ctx, e.client, testservice.Failing(fmt.Sprint("u", i), 0, codes.OK)); err != nil {
				t.Fatal(err)
			}
			if err := e.conn.Invoke(ctx, fmt.Sprintf("/other%d.Svc/M", i), &testingv1.UnaryRequest{}, &testingv1.UnaryResponse{}); status.Code(err) != codes.Unimplemented {
				t.Fatalf("err %v, want UNIMPLEMENTED", err)
			}
			if b := c.Breaker(target, testingv1.TestService_Query_FullMethodName); b != c.Breaker(target, testingv1.TestService_Unary_FullMethodName) {
				t.Fatalf("round %d: two methods of one service have two breakers", i)
			}
		}
	})

	t.Run("past 1024 keys by default", func(t *testing.T) {
		k := newKeyCounter()
		c := newClient(t, interceptors.Config{
			Default:  interceptors.Policy{Breaker: &interceptors.BreakerPolicy{}},
			Observer: k.observer(),
		})
		ok := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
		const n = 1100
		ctx := ctxTimeout(t, 10*time.Second)
		for i := range n {
			if err := c.UnaryClientInterceptor()(ctx, fmt.Sprintf("/pkg.Svc/M%d", i), nil, nil, nil, ok); err != nil {
				t.Fatal(err)
			}
		}
		if g := k.guarded.Load(); g != n {
			t.Errorf("%d of %d calls had a breaker", g, n)
		}
		if c.Breaker("", fmt.Sprintf("/pkg.Svc/M%d", n-1)) == nil {
			t.Error("no breaker for the last method")
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		if len(k.evicted) != 0 || len(k.overflow) != 0 {
			t.Errorf("evictions %v, overflows %v under DefaultMaxKeys", k.evicted, k.overflow)
		}
	})
}
