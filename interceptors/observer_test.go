package interceptors_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/retry"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// previousAttempts reads the grpc-previous-rpc-attempts header of an
// outgoing context.
func previousAttempts(ctx context.Context) (string, bool) {
	md, _ := metadata.FromOutgoingContext(ctx)
	v := md.Get(interceptors.PreviousAttemptsHeader)
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

type attemptKey struct{}

// recorder records everything an Observer hears, and marks each attempt's
// context so that tests can see it reach the invoker. Its observer method
// returns the Observer that feeds it.
type recorder struct {
	mu       sync.Mutex
	calls    []interceptors.CallInfo
	ends     []interceptors.CallInfo
	endErrs  []error
	attempts []interceptors.AttemptInfo
	ended    []interceptors.AttemptInfo
	events   []interceptors.Event
}

func (r *recorder) CallStart(ctx context.Context, info interceptors.CallInfo) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, info)
	return ctx
}

func (r *recorder) CallEnd(_ context.Context, info interceptors.CallInfo, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ends = append(r.ends, info)
	r.endErrs = append(r.endErrs, err)
}

func (r *recorder) AttemptStart(ctx context.Context, info interceptors.AttemptInfo) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts = append(r.attempts, info)
	return context.WithValue(ctx, attemptKey{}, info.Attempt)
}

func (r *recorder) AttemptEnd(_ context.Context, info interceptors.AttemptInfo, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ended = append(r.ended, info)
}

func (r *recorder) Event(_ context.Context, e interceptors.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// observer returns an Observer whose every hook records into r.
func (r *recorder) observer() interceptors.Observer {
	return interceptors.Observer{
		OnCallStart:    r.CallStart,
		OnCallEnd:      r.CallEnd,
		OnAttemptStart: r.AttemptStart,
		OnAttemptEnd:   r.AttemptEnd,
		OnEvent:        r.Event,
	}
}

func (r *recorder) kinds() []interceptors.EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var k []interceptors.EventKind
	for _, e := range r.events {
		k = append(k, e.Kind)
	}
	return k
}

// TestObserverRetry checks the hooks of a call retried twice: one call,
// three attempts with their numbers, delays and pushback, two retry events,
// and the attempt's context reaching the invoker.
func TestObserverRetry(t *testing.T) {
	rec := &recorder{}
	c := newClient(t, interceptors.Config{
		Default:  interceptors.Policy{Retry: fastRetry(3), Breaker: &interceptors.BreakerPolicy{}},
		Observer: rec.observer(),
	})
	var seen []any
	var mu sync.Mutex
	inner := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		mu.Lock()
		seen = append(seen, ctx.Value(attemptKey{}))
		mu.Unlock()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	e := newEnv(t, nil, c.UnaryClientInterceptor(), inner)
	b := testservice.Failing("obs", 2, codes.Unavailable)
	b.PushbackMs = "10"
	if err := unary(ctxTimeout(t, 10*time.Second), e.client, b); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.calls) != 1 || len(rec.ends) != 1 || rec.ends[0].Attempts != 3 || rec.endErrs[0] != nil || rec.ends[0].Pattern != interceptors.PatternRetry {
		t.Errorf("calls %+v, ends %+v %v; want one retried call of 3 attempts", rec.calls, rec.ends, rec.endErrs)
	}
	if len(rec.attempts) != 3 || len(rec.ended) != 3 {
		t.Fatalf("attempt starts %d, ends %d; want 3", len(rec.attempts), len(rec.ended))
	}
	for i, a := range rec.attempts {
		if a.Attempt != i+1 || a.Method != testingv1.TestService_Unary_FullMethodName || !a.Breaker || a.BreakerState != breaker.Closed {
			t.Errorf("attempt %d: %+v", i+1, a)
		}
		if (i > 0) != a.PushbackHonoured || (i > 0) != (a.Delay == 10*time.Millisecond) {
			t.Errorf("attempt %d: delay %v, pushback honoured %v; want the server's 10ms after the first", i+1, a.Delay, a.PushbackHonoured)
		}
	}
	if !rec.ended[0].Pushback.Present || rec.ended[2].Pushback.Present {
		t.Errorf("pushback at the ends: %+v", rec.ended)
	}
	if want := []any{1, 2, 3}; !slices.Equal(seen, want) {
		t.Errorf("the invoker saw attempt contexts %v, want %v", seen, want)
	}
	var retries int
	for _, ev := range rec.events {
		if ev.Kind == interceptors.EventRetry {
			retries++
			if !ev.PushbackHonoured || ev.Delay != 10*time.Millisecond {
				t.Errorf("retry event %+v, want the server's 10ms pushback honoured", ev)
			}
		}
	}
	if retries != 2 {
		t.Errorf("events %v, want 2 retries", rec.events)
	}
}

// TestObserverEvents checks the events of a breaker rejection, its state
// change, a hedge, a fallback and exhausted retries.
func TestObserverEvents(t *testing.T) {
	rec := &recorder{}
	c := newClient(t, interceptors.Config{
		Default: interceptors.Policy{
			Retry:    fastRetry(2),
			Breaker:  &interceptors.BreakerPolicy{FailureThreshold: 2, OpenDuration: time.Hour},
			Fallback: &interceptors.FallbackPolicy{Func: func(_ context.Context, _ string, _, _ any, err error) error { return err }},
		},
		Methods:  map[string]interceptors.Policy{testingv1.TestService_Query_FullMethodName: {Hedging: hedging(1, 0)}},
		Observer: rec.observer(),
	})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	_ = unary(ctx, e.client, testservice.Failing("x", -1, codes.Unavailable)) // 2 attempts, exhausted, opens
	_ = unary(ctx, e.client, testservice.Failing("y", -1, codes.Unavailable)) // rejected
	if err := query(ctx, e.client, testservice.Sleeping("q", 5*time.Second, 1)); err != nil {
		t.Fatal(err)
	}
	kinds := rec.kinds()
	for _, want := range []interceptors.EventKind{
		interceptors.EventRetry, interceptors.EventRetriesExhausted, interceptors.EventBreakerStateChange,
		interceptors.EventBreakerRejected, interceptors.EventFallback, interceptors.EventHedge,
	} {
		if !slices.Contains(kinds, want) {
			t.Errorf("no %v event in %v", want, kinds)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, ev := range rec.events {
		if ev.Kind == interceptors.EventBreakerRejected && (ev.BreakerState != breaker.Open || !errors.Is(ev.Err, resilience.ErrCircuitOpen)) {
			t.Errorf("rejection event %+v", ev)
		}
	}
	// The rejected call reached no invoker: 2 + 0 + 2 attempt starts.
	if len(rec.attempts) != 4 {
		t.Errorf("%d attempt starts, want 4", len(rec.attempts))
	}
	for _, a := range rec.attempts {
		if a.Method == testingv1.TestService_Query_FullMethodName && a.Attempt == 2 && !a.Hedge {
			t.Errorf("hedge not marked: %+v", a)
		}
	}
	if code := status.Code(rec.endErrs[1]); code != codes.Unavailable {
		t.Errorf("rejected call ended with %v", rec.endErrs[1])
	}
}

// TestObserverLimits checks the events of the limits: a budget that denies
// a retry and a hedge (the hedge is then not sent), a retry whose wait
// would end past the deadline, and a bulkhead rejection.
func TestObserverLimits(t *testing.T) {
	rec := &recorder{}
	retryPolicy := fastRetry(3)
	retryPolicy.Budget = nil
	late := fastRetry(3)
	late.Backoff = interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: time.Hour}
	c := newClient(t, interceptors.Config{
		Default:      interceptors.Policy{Retry: retryPolicy},
		Observer:     rec.observer(),
		TargetBudget: func(string) retry.Budget { return retry.NewTokenBucket(0, 0) }, // denies everything
		Methods: map[string]interceptors.Policy{
			testingv1.TestService_Query_FullMethodName: {
				Hedging: &interceptors.HedgingPolicy{MaxExtraAttempts: 1, Delay: 20 * time.Millisecond},
			},
			testingv1.TestService_IdempotentUnary_FullMethodName: {
				Retry:    late,
				Bulkhead: &interceptors.BulkheadPolicy{Limit: 1},
			},
		},
	})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)

	_ = unary(ctx, e.client, testservice.Failing("denied", -1, codes.Unavailable))
	if got := e.svc.Attempts("denied"); got != 1 {
		t.Errorf("retry under a denying budget: %d attempts, want 1", got)
	}
	resp, err := e.client.Query(ctx, &testingv1.QueryRequest{Behavior: testservice.Sleeping("nohedge", 200*time.Millisecond, 1)})
	if err != nil || resp.GetReply().GetAttempt() != 1 || e.svc.Attempts("nohedge") != 1 {
		t.Errorf("hedge under a denying budget: %v, %v, %d attempts; want the first attempt alone", resp.GetReply(), err, e.svc.Attempts("nohedge"))
	}
	_ = idempotentUnary(ctx, e.client, testservice.Failing("late", -1, codes.Unavailable))

	slow := make(chan error, 1)
	go func() { slow <- idempotentUnary(ctx, e.client, testservice.Sleeping("slow", 300*time.Millisecond, 0)) }()
	if err := e.svc.WaitAttempts(ctx, "slow", 1); err != nil {
		t.Fatal(err)
	}
	_ = idempotentUnary(ctx, e.client, testservice.Failing("shed", 0, codes.OK))
	if err := <-slow; err != nil {
		t.Fatal(err)
	}

	counts := map[interceptors.EventKind]int{}
	for _, k := range rec.kinds() {
		counts[k]++
	}
	if counts[interceptors.EventBudgetDenied] != 2 || counts[interceptors.EventDeadline] != 1 ||
		counts[interceptors.EventBulkheadRejected] != 1 || counts[interceptors.EventHedge] != 0 {
		t.Errorf("events %v, want 2 budget denials, 1 deadline, 1 bulkhead rejection, no hedge", counts)
	}
}
