package interceptors_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/retry"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

type subKey struct{}

// A subscriber hears every hook next to Config.Observer, after it, with
// the contexts chained, until it cancels; cancel is idempotent.
func TestClientSubscribe(t *testing.T) {
	cfgRec, sub := &recorder{}, &recorder{}
	c := newClient(t, interceptors.Config{
		Default:  interceptors.Policy{Retry: fastRetry(3)},
		Observer: cfgRec.observer(),
	})
	var chained, reached []any
	var mu sync.Mutex
	o := sub.observer()
	o.OnCallStart = func(ctx context.Context, info interceptors.CallInfo) context.Context {
		sub.CallStart(ctx, info)
		return context.WithValue(ctx, subKey{}, "sub")
	}
	o.OnAttemptStart = func(ctx context.Context, info interceptors.AttemptInfo) context.Context {
		mu.Lock()
		chained = append(chained, ctx.Value(attemptKey{})) // set by Config.Observer's hook, which runs first
		mu.Unlock()
		return sub.AttemptStart(ctx, info)
	}
	inner := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		mu.Lock()
		reached = append(reached, ctx.Value(subKey{}))
		mu.Unlock()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	e := newEnv(t, nil, c.UnaryClientInterceptor(), inner)
	cancel := c.Subscribe(o)
	if err := unary(ctxTimeout(t, 10*time.Second), e.client, testservice.Failing("sub1", 2, codes.Unavailable)); err != nil {
		t.Fatal(err)
	}
	cancel()
	cancel()
	if err := unary(ctxTimeout(t, 10*time.Second), e.client, testservice.Failing("sub2", 1, codes.Unavailable)); err != nil {
		t.Fatal(err)
	}
	cfgRec.mu.Lock()
	sub.mu.Lock()
	defer cfgRec.mu.Unlock()
	defer sub.mu.Unlock()
	if len(cfgRec.calls) != 2 || len(cfgRec.attempts) != 5 || len(cfgRec.events) != 3 {
		t.Errorf("Config.Observer heard %d calls, %d attempts, %d events; want 2, 5, 3", len(cfgRec.calls), len(cfgRec.attempts), len(cfgRec.events))
	}
	if len(sub.calls) != 1 || len(sub.ends) != 1 || len(sub.attempts) != 3 || len(sub.ended) != 3 || len(sub.events) != 2 || sub.ends[0].Attempts != 3 {
		t.Errorf("the subscriber heard %d calls, %d ends, %d attempts, %d attempt ends, %d events; want 1, 1, 3, 3, 2 (until it cancelled)",
			len(sub.calls), len(sub.ends), len(sub.attempts), len(sub.ended), len(sub.events))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(chained) != 3 || chained[0] != 1 || chained[2] != 3 {
		t.Errorf("the subscriber's OnAttemptStart saw Config.Observer's values %v, want [1 2 3]", chained)
	}
	if len(reached) != 5 || reached[0] != "sub" || reached[2] != "sub" || reached[3] != nil {
		t.Errorf("the subscriber's context value reached the invoker as %v, want sub three times, then nothing", reached)
	}
}

// A client built without an Observer tells a subscriber about breaker
// transitions and retries of state that existed before it subscribed.
func TestClientSubscribeWithoutConfigObserver(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{Retry: fastRetry(2), Breaker: &interceptors.BreakerPolicy{FailureThreshold: 2}})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	if err := unary(ctxTimeout(t, 10*time.Second), e.client, nil); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	defer c.Subscribe(rec.observer())()
	if err := unary(ctxTimeout(t, 10*time.Second), e.client, testservice.Failing("open", 5, codes.Unavailable)); status.Code(err) != codes.Unavailable {
		t.Fatalf("call: %v, want UNAVAILABLE", err)
	}
	kinds := rec.kinds()
	var retries, opened int
	for _, k := range kinds {
		switch k {
		case interceptors.EventRetry:
			retries++
		case interceptors.EventBreakerStateChange:
			opened++
		}
	}
	if retries != 1 || opened != 1 {
		t.Fatalf("events %v: want one retry and one breaker transition", kinds)
	}
	if b := c.Breaker(e.conn.Target(), "/grpcresilience.testing.v1.TestService/Unary"); b.State() != breaker.Open {
		t.Fatalf("breaker %v, want open", b.State())
	}
	if noop := c.Subscribe(interceptors.Observer{}); noop == nil {
		t.Fatal("Subscribe of an empty Observer returned a nil cancel")
	}
}

// The snapshot shows each method's breaker, bulkhead, rate limit and
// budget with the policy in force, and each policy's shared state.
func TestClientSnapshot(t *testing.T) {
	own := retry.NewTokenBucket(10, 0.1)
	c := newClient(t, interceptors.Config{
		Default: interceptors.Policy{
			Retry:     &interceptors.RetryPolicy{MaxAttempts: 2, Backoff: interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: time.Millisecond}},
			Breaker:   &interceptors.BreakerPolicy{FailureThreshold: 3, Scope: interceptors.ScopeService},
			Bulkhead:  &interceptors.BulkheadPolicy{Limit: 4, Queue: 1},
			RateLimit: &interceptors.RateLimitPolicy{Rate: 0.001, Burst: 3},
		},
		Methods: map[string]interceptors.Policy{
			"/grpcresilience.testing.v1.TestService/IdempotentUnary": {Retry: &interceptors.RetryPolicy{MaxAttempts: 2, Budget: own}},
		},
		Services: map[string]interceptors.Policy{"other.Svc": {}},
	})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	if err := unary(ctx, e.client, testservice.Failing("snap", 1, codes.Unavailable)); err != nil {
		t.Fatal(err) // two attempts, two permits
	}
	if err := unary(ctx, e.client, nil); err != nil {
		t.Fatal(err) // the third permit
	}
	if err := unary(ctx, e.client, nil); !errors.Is(err, resilience.ErrRateLimited) {
		t.Fatalf("fourth attempt: %v, want it rate-limited", err)
	}
	if _, err := e.client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{}); err != nil {
		t.Fatal(err)
	}

	s := c.Snapshot()
	target := e.conn.Target()
	if len(s.Methods) != 2 || s.Methods[0].Method != "/grpcresilience.testing.v1.TestService/IdempotentUnary" ||
		s.Methods[1].Method != "/grpcresilience.testing.v1.TestService/Unary" {
		t.Fatalf("snapshot methods %+v, want IdempotentUnary then Unary", s.Methods)
	}
	idem, u := s.Methods[0], s.Methods[1]
	if idem.Policy != "method:/grpcresilience.testing.v1.TestService/IdempotentUnary" || idem.Breaker != nil || idem.Bulkhead != nil || idem.RateLimit != nil ||
		idem.Budget == nil || idem.Budget.Target != "" || idem.Budget.Type != "*retry.TokenBucket" || idem.Budget.Available != 4 {
		t.Errorf("IdempotentUnary %+v, budget %+v", idem, idem.Budget)
	}
	if u.Target != target || u.Policy != "default" || u.Pattern != interceptors.PatternRetry || u.MaxAttempts != 2 {
		t.Errorf("Unary %+v", u)
	}
	if b := u.Breaker; b == nil || b.Scope != interceptors.ScopeService || b.Key != target+"/grpcresilience.testing.v1.TestService" ||
		b.FailureThreshold != 3 || b.Metrics.State != breaker.Closed || b.Metrics.Failures != 1 || b.Metrics.Successes != 2 {
		t.Errorf("Unary breaker %+v", b)
	}
	if b := u.Bulkhead; b == nil || b.Scope != interceptors.ScopeMethod || b.Key != target+"/grpcresilience.testing.v1.TestService/Unary" ||
		b.Limit != 4 || b.Queue != 1 || b.Metrics.Limit != 4 || b.Metrics.Admitted != 3 || b.Metrics.InFlight != 0 {
		t.Errorf("Unary bulkhead %+v", b)
	}
	if r := u.RateLimit; r == nil || r.Rate != 0.001 || r.Burst != 3 || r.Limited != 1 || r.Tokens > 0.01 || r.Key != u.Bulkhead.Key {
		t.Errorf("Unary rate limit %+v", r)
	}
	if b := u.Budget; b == nil || b.Target != target || b.Type != "*retry.RatioBudget" || b.Available < 9 || b.Available > 10 {
		t.Errorf("Unary budget %+v, want the target's ratio budget: its floor of 10 retries, less the one spent while it counts", b)
	}
	if len(s.Budgets) != 1 || s.Budgets[0] != *u.Budget {
		t.Errorf("budgets %+v, want the target's", s.Budgets)
	}
	if len(s.Policies) != 3 || s.Policies[0].Name != "default" || s.Policies[1].Name != idem.Policy || s.Policies[2].Name != "service:other.Svc" {
		t.Fatalf("policies %+v", s.Policies)
	}
	if d := s.Policies[0]; d.RateLimit == nil || d.RateLimit.Admitted != 3 || d.RateLimit.Limited != 1 || d.OverflowBreaker != nil || d.OverflowBulkhead == nil {
		t.Errorf("default policy %+v", d)
	}
	if _, err := json.Marshal(s); err != nil {
		t.Errorf("the snapshot does not marshal: %v", err)
	}
}

// Snapshots, subscriptions and cancellations made while calls of more
// methods than the cap run: the snapshots stay within the cap and sorted,
// and each call tells a subscriber of its end when it told it of its
// start.
func TestClientSnapshotBoundedUnderLoad(t *testing.T) {
	const maxKeys, methods, calls = 4, 20, 200
	c := newClient(t, interceptors.Config{
		MaxKeys: maxKeys,
		Default: interceptors.Policy{Breaker: &interceptors.BreakerPolicy{Scope: interceptors.ScopeService}, Bulkhead: &interceptors.BulkheadPolicy{Limit: 8}},
	})
	if s := c.Snapshot(); len(s.Methods) != 0 || len(s.Budgets) != 0 {
		t.Fatalf("snapshot of an unused client %+v", s)
	}
	e := newEnv(t, []testservice.Option{testservice.WithTCP("")}, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 60*time.Second)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < calls; i += 4 {
				// Methods the server does not know: UNIMPLEMENTED, each
				// with its own state on the client.
				_ = e.conn.Invoke(ctx, "/pkg.Svc"+strconv.Itoa(i%3)+"/M"+strconv.Itoa(i%methods), &testingv1.UnaryRequest{}, &testingv1.UnaryResponse{})
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var subs []*recorder
	for {
		rec := &recorder{}
		stop := c.Subscribe(rec.observer())
		s := c.Snapshot()
		stop()
		if len(subs) < 50 {
			subs = append(subs, rec)
		}
		if len(s.Methods) > maxKeys || len(s.Budgets) > maxKeys {
			t.Fatalf("snapshot with %d methods and %d budgets, above the cap %d", len(s.Methods), len(s.Budgets), maxKeys)
		}
		for i := 1; i < len(s.Methods); i++ {
			if a, b := s.Methods[i-1], s.Methods[i]; a.Target > b.Target || a.Target == b.Target && a.Method >= b.Method {
				t.Fatalf("methods not sorted: %s before %s", a.Method, b.Method)
			}
		}
		select {
		case <-done:
			// A call hears the observers subscribed when it started for
			// its end too: every subscriber saw as many ends as starts.
			for _, rec := range subs {
				rec.mu.Lock()
				starts, ends := len(rec.calls), len(rec.ends)
				rec.mu.Unlock()
				if starts != ends {
					t.Fatalf("a subscriber heard %d call starts and %d call ends", starts, ends)
				}
			}
			return
		case <-ctx.Done():
			t.Fatal("the calls did not end")
		default:
		}
	}
}

// A unary call keeps the observers it started with: one subscribed while
// the call runs hears none of its attempts' hooks nor its end, so that
// every OnCallEnd and OnAttemptEnd a subscriber hears has its start.
func TestClientCallKeepsItsObservers(t *testing.T) {
	c := newClient(t, interceptors.Config{Default: interceptors.Policy{Retry: fastRetry(3)}})
	late := &recorder{}
	var once sync.Once
	inner := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		once.Do(func() { t.Cleanup(c.Subscribe(late.observer())) }) // during attempt 1
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	e := newEnv(t, nil, c.UnaryClientInterceptor(), inner)
	if err := unary(ctxTimeout(t, 10*time.Second), e.client, testservice.Failing("late", 2, codes.Unavailable)); err != nil {
		t.Fatal(err)
	}
	late.mu.Lock()
	defer late.mu.Unlock()
	if len(late.calls) != 0 || len(late.ends) != 0 || len(late.attempts) != 0 || len(late.ended) != 0 {
		t.Errorf("an observer subscribed during the call heard %d starts, %d ends, %d attempts, %d attempt ends of it; want none",
			len(late.calls), len(late.ends), len(late.attempts), len(late.ended))
	}
}
