package interceptors_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/retry"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// TestClassificationTable makes the server answer every code on every
// attempt and checks, for a non-idempotent and an idempotent method, how
// many attempts the server saw, the code the caller got, and how the
// attempts counted for the breaker: the default table row by row, plus a
// code gRPC does not define and a configured ABORTED row.
func TestClassificationTable(t *testing.T) {
	type want struct {
		attempts int // on each method, with 3 attempts allowed
		breaker  breaker.Outcome
	}
	rows := []struct {
		code  codes.Code
		plain want // Unary, not idempotent
		idem  want // IdempotentUnary
		table *classify.Table
	}{
		{codes.OK, want{1, breaker.Success}, want{1, breaker.Success}, nil},
		{codes.Canceled, want{1, breaker.Ignored}, want{1, breaker.Ignored}, nil},
		{codes.Unknown, want{1, breaker.Failure}, want{1, breaker.Failure}, nil},
		{codes.InvalidArgument, want{1, breaker.Success}, want{1, breaker.Success}, nil},
		{codes.DeadlineExceeded, want{1, breaker.Failure}, want{1, breaker.Failure}, nil}, // the server's, not an attempt timeout
		{codes.NotFound, want{1, breaker.Success}, want{1, breaker.Success}, nil},
		{codes.AlreadyExists, want{1, breaker.Success}, want{1, breaker.Success}, nil},
		{codes.PermissionDenied, want{1, breaker.Success}, want{1, breaker.Success}, nil},
		{codes.ResourceExhausted, want{1, breaker.Failure}, want{1, breaker.Failure}, nil}, // no pushback
		{codes.FailedPrecondition, want{1, breaker.Success}, want{1, breaker.Success}, nil},
		{codes.Aborted, want{1, breaker.Ignored}, want{1, breaker.Ignored}, nil},
		{codes.OutOfRange, want{1, breaker.Success}, want{1, breaker.Success}, nil},
		{codes.Unimplemented, want{1, breaker.Success}, want{1, breaker.Success}, nil},
		{codes.Internal, want{1, breaker.Failure}, want{1, breaker.Failure}, nil},
		{codes.Unavailable, want{3, breaker.Failure}, want{3, breaker.Failure}, nil},
		{codes.DataLoss, want{1, breaker.Failure}, want{1, breaker.Failure}, nil},
		{codes.Unauthenticated, want{1, breaker.Success}, want{1, breaker.Success}, nil},
		{codes.Code(42), want{1, breaker.Failure}, want{1, breaker.Failure}, nil}, // like UNKNOWN
		{codes.Aborted, want{1, breaker.Failure}, want{3, breaker.Failure}, ptr(classify.Default().With(codes.Aborted,
			classify.Rule{Retry: classify.RetryIfIdempotent, Breaker: classify.BreakerFailure}))},
	}
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		for _, row := range rows {
			name := row.code.String()
			if row.table != nil {
				name += "/configured"
			}
			t.Run(name, func(t *testing.T) {
				r := fastRetry(3)
				r.Table = row.table
				c := newPipeline(t, interceptors.Policy{
					Retry:   r,
					Breaker: &interceptors.BreakerPolicy{FailureThreshold: 10, OpenDuration: time.Hour, Table: row.table},
				})
				e := newEnv(t, topts, c.UnaryClientInterceptor())
				ctx := ctxTimeout(t, 10*time.Second)
				n := int32(-1)
				if row.code == codes.OK {
					n = 0
				}
				_, err := e.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Failing("plain", n, row.code)})
				checkRow(t, c, e, "Unary", testingv1.TestService_Unary_FullMethodName, "plain", err, row.code, row.plain.attempts, row.plain.breaker)
				_, err = e.client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: testservice.Failing("idem", n, row.code)})
				checkRow(t, c, e, "IdempotentUnary", testingv1.TestService_IdempotentUnary_FullMethodName, "idem", err, row.code, row.idem.attempts, row.idem.breaker)
			})
		}
	})
}

func checkRow(t *testing.T, c *interceptors.Client, e *env, name, method, id string, err error, code codes.Code, attempts int, outcome breaker.Outcome) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Errorf("%s: code %v, want %v (err %v)", name, got, code, err)
	}
	if _, ok := status.FromError(err); !ok {
		t.Errorf("%s: %v is not a gRPC status", name, err)
	}
	if got := e.svc.Attempts(id); got != attempts {
		t.Errorf("%s: server saw %d attempts, want %d", name, got, attempts)
	}
	if attempts > 1 {
		var ex *resilience.RetriesExhaustedError
		if !errors.As(err, &ex) || ex.Attempts != attempts {
			t.Errorf("%s: %v does not match *RetriesExhaustedError{Attempts: %d}", name, err, attempts)
		}
	}
	m := c.Breaker(e.srv.Target(), method).Metrics()
	counts := map[breaker.Outcome]uint64{breaker.Success: m.Successes, breaker.Failure: m.Failures, breaker.Ignored: m.Ignored}
	if counts[outcome] != uint64(attempts) || m.Calls != uint64(attempts) {
		t.Errorf("%s: breaker counted %+v, want %d %v", name, counts, attempts, outcome)
	}
}

func ptr[T any](v T) *T { return &v }

// TestPushbackDelayIsHonoured checks that a server's pushback, in the
// trailer or as RetryInfo, sets the wait before the next attempt (even for
// RESOURCE_EXHAUSTED, which is retried only with pushback), and that the
// attempts after the first carry grpc-previous-rpc-attempts.
func TestPushbackDelayIsHonoured(t *testing.T) {
	const delay = 150 * time.Millisecond
	cases := []struct {
		name string
		b    *testingv1.Behavior
	}{
		{"trailer", &testingv1.Behavior{FailAttempts: 1, FailCode: uint32(codes.ResourceExhausted), PushbackMs: "150"}},
		{"retry info", &testingv1.Behavior{FailAttempts: 1, FailCode: uint32(codes.ResourceExhausted), RetryInfoDelay: durationpb.New(delay)}},
		{"trailer on unavailable", &testingv1.Behavior{FailAttempts: 1, FailCode: uint32(codes.Unavailable), PushbackMs: "150"}},
	}
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := newPipeline(t, interceptors.Policy{Retry: fastRetry(3)})
				e := newEnv(t, topts, c.UnaryClientInterceptor())
				tc.b.CallId = "pb"
				resp, err := e.client.Unary(ctxTimeout(t, 10*time.Second), &testingv1.UnaryRequest{Behavior: tc.b})
				if err != nil {
					t.Fatal(err)
				}
				if resp.GetReply().GetAttempt() != 2 || resp.GetReply().GetPreviousRpcAttempts() != "1" {
					t.Errorf("reply %+v, want attempt 2 with grpc-previous-rpc-attempts 1", resp.GetReply())
				}
				log := e.log.all()
				if len(log) != 2 {
					t.Fatalf("server saw %d attempts, want 2", len(log))
				}
				if log[0].previous != "" {
					t.Errorf("first attempt carried grpc-previous-rpc-attempts %q", log[0].previous)
				}
				// The retry starts no earlier than the server asked; the
				// first attempt's own duration only adds to the gap.
				if gap := log[1].start.Sub(log[0].start); gap < delay-5*time.Millisecond {
					t.Errorf("retry came %v after the first attempt, want at least %v", gap, delay)
				}
			})
		}
	})
}

// TestPushbackVetoStopsRetrying checks that a negative or malformed
// pushback, or an invalid RetryInfo, forbids the retry even for UNAVAILABLE.
func TestPushbackVetoStopsRetrying(t *testing.T) {
	cases := map[string]*testingv1.Behavior{
		"negative":           {FailAttempts: -1, PushbackMs: "-1"},
		"malformed":          {FailAttempts: -1, PushbackMs: "soon"},
		"negative retryinfo": {FailAttempts: -1, FailCode: uint32(codes.ResourceExhausted), RetryInfoDelay: &durationpb.Duration{Seconds: -1}},
	}
	c := newPipeline(t, interceptors.Policy{Retry: fastRetry(5)})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			b.CallId = name
			_, err := e.client.Unary(ctxTimeout(t, 10*time.Second), &testingv1.UnaryRequest{Behavior: b})
			if err == nil {
				t.Fatal("call succeeded")
			}
			if got := e.svc.Attempts(name); got != 1 {
				t.Errorf("server saw %d attempts, want 1", got)
			}
			if _, ok := errors.AsType[*resilience.RetriesExhaustedError](err); ok {
				t.Errorf("a veto reported as exhausted retries: %v", err)
			}
			if _, ok := status.FromError(err); !ok {
				t.Errorf("%v is not a status", err)
			}
		})
	}
}

// TestPerCallOverrides checks WithMaxAttempts, DisableRetry,
// WithAttemptTimeout and WithIdempotency.
func TestPerCallOverrides(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{Retry: fastRetry(4)})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)

	t.Run("WithMaxAttempts", func(t *testing.T) {
		_, err := e.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Failing("max", -1, codes.Unavailable)}, interceptors.WithMaxAttempts(2))
		if got := e.svc.Attempts("max"); got != 2 {
			t.Errorf("server saw %d attempts, want 2", got)
		}
		if ex, ok := errors.AsType[*resilience.RetriesExhaustedError](err); !ok || ex.Attempts != 2 {
			t.Errorf("err %v, want exhausted after 2", err)
		}
	})
	t.Run("DisableRetry", func(t *testing.T) {
		_, err := e.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Failing("off", -1, codes.Unavailable)}, interceptors.DisableRetry())
		if got := e.svc.Attempts("off"); got != 1 {
			t.Errorf("server saw %d attempts, want 1", got)
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("err %v, want UNAVAILABLE", err)
		}
	})
	t.Run("WithAttemptTimeout", func(t *testing.T) {
		start := time.Now()
		resp, err := e.client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: testservice.Sleeping("slow-first", 5*time.Second, 1)},
			interceptors.WithAttemptTimeout(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetReply().GetAttempt() != 2 {
			t.Errorf("answered by attempt %d, want 2", resp.GetReply().GetAttempt())
		}
		if el := time.Since(start); el > 4*time.Second {
			t.Errorf("took %v: the first attempt was not cut short", el)
		}
	})
	t.Run("WithIdempotency", func(t *testing.T) {
		// Unary is not idempotent by its descriptor: declared so, its
		// attempt timeout is retried.
		resp, err := e.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Sleeping("declared", 5*time.Second, 1)},
			interceptors.WithAttemptTimeout(100*time.Millisecond), interceptors.WithIdempotency(interceptors.AlwaysIdempotent))
		if err != nil || resp.GetReply().GetAttempt() != 2 {
			t.Errorf("got %v, %v; want attempt 2 to answer", resp.GetReply(), err)
		}
		// IdempotentUnary declared not idempotent: not retried.
		_, err = e.client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: testservice.Sleeping("undeclared", 5*time.Second, 1)},
			interceptors.WithAttemptTimeout(100*time.Millisecond), interceptors.WithIdempotency(interceptors.NeverIdempotent))
		checkAttemptTimeout(t, err, 100*time.Millisecond)
		if got := e.svc.Attempts("undeclared"); got != 1 {
			t.Errorf("server saw %d attempts, want 1", got)
		}
	})
}

// checkAttemptTimeout checks that err is a per-attempt timeout: a
// DEADLINE_EXCEEDED status matching *resilience.TimeoutError.
func checkAttemptTimeout(t *testing.T, err error, after time.Duration) {
	t.Helper()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("err %v, want DEADLINE_EXCEEDED", err)
	}
	if te, ok := errors.AsType[*resilience.TimeoutError](err); !ok || te.After != after {
		t.Errorf("err %v does not match *TimeoutError{After: %v}", err, after)
	}
}

// TestIdempotency checks that an attempt timeout is retried for methods
// whose descriptor says IDEMPOTENT or NO_SIDE_EFFECTS, not for others, and
// that Policy.Idempotency overrides the descriptor both ways.
func TestIdempotency(t *testing.T) {
	const timeout = 100 * time.Millisecond
	policy := func(i interceptors.Idempotency) interceptors.Policy {
		r := fastRetry(3)
		r.AttemptTimeout = timeout
		return interceptors.Policy{Retry: r, Idempotency: i}
	}
	cases := []struct {
		name     string
		idem     interceptors.Idempotency
		call     func(ctx context.Context, cl testingv1.TestServiceClient, b *testingv1.Behavior) error
		retried  bool
		behavior string
	}{
		{"Unary/descriptor", interceptors.FromDescriptor, unary, false, "u-desc"},
		{"IdempotentUnary/descriptor", interceptors.FromDescriptor, idempotentUnary, true, "i-desc"},
		{"Query/descriptor", interceptors.FromDescriptor, query, true, "q-desc"},
		{"Unary/declared", interceptors.AlwaysIdempotent, unary, true, "u-decl"},
		{"IdempotentUnary/denied", interceptors.NeverIdempotent, idempotentUnary, false, "i-deny"},
	}
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := newPipeline(t, policy(tc.idem))
				e := newEnv(t, topts, c.UnaryClientInterceptor())
				err := tc.call(ctxTimeout(t, 10*time.Second), e.client, testservice.Sleeping(tc.behavior, 5*time.Second, 1))
				want := 1
				if tc.retried {
					want = 2
					if err != nil {
						t.Errorf("err %v, want the retry to succeed", err)
					}
				} else {
					checkAttemptTimeout(t, err, timeout)
				}
				if got := e.svc.Attempts(tc.behavior); got != want {
					t.Errorf("server saw %d attempts, want %d", got, want)
				}
			})
		}
	})
}

func unary(ctx context.Context, cl testingv1.TestServiceClient, b *testingv1.Behavior) error {
	_, err := cl.Unary(ctx, &testingv1.UnaryRequest{Behavior: b})
	return err
}

func idempotentUnary(ctx context.Context, cl testingv1.TestServiceClient, b *testingv1.Behavior) error {
	_, err := cl.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: b})
	return err
}

func query(ctx context.Context, cl testingv1.TestServiceClient, b *testingv1.Behavior) error {
	_, err := cl.Query(ctx, &testingv1.QueryRequest{Behavior: b})
	return err
}

// TestNeverPastTheDeadline checks that no attempt reaches the server after
// the caller's deadline, and that the call returns without waiting in vain
// for a retry that could not start in time.
func TestNeverPastTheDeadline(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		r := fastRetry(1000)
		r.Backoff = interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: 70 * time.Millisecond}
		c := newPipeline(t, interceptors.Policy{Retry: r})
		e := newEnv(t, topts, c.UnaryClientInterceptor())
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		deadline, _ := ctx.Deadline()
		_, err := e.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Failing("dl", -1, codes.Unavailable)})
		returned := time.Now()
		if err == nil {
			t.Fatal("call succeeded")
		}
		if _, ok := status.FromError(err); !ok {
			t.Errorf("%v is not a status", err)
		}
		log := e.log.all()
		if len(log) < 2 {
			t.Errorf("server saw %d attempts, want retries within the deadline", len(log))
		}
		// The client starts no attempt after the deadline; the server sees
		// the last one at most a loopback transit later.
		const transit = 20 * time.Millisecond
		for i, a := range log {
			if !a.start.Before(deadline.Add(transit)) {
				t.Errorf("attempt %d reached the server %v after the deadline", i+1, a.start.Sub(deadline))
			}
		}
		// The engine gives up when the next wait cannot end in time,
		// instead of sleeping until the deadline: at most one backoff
		// early, never much later.
		if late := returned.Sub(deadline); late > 150*time.Millisecond {
			t.Errorf("returned %v after the deadline", late)
		}
	})
}

// TestDeadlineBetweenAttempts checks that a caller deadline that ends
// while an attempt runs ends the call with DEADLINE_EXCEEDED and no retry,
// even for an idempotent method with a per-attempt timeout.
func TestDeadlineBetweenAttempts(t *testing.T) {
	r := fastRetry(5)
	r.AttemptTimeout = time.Second
	c := newPipeline(t, interceptors.Policy{Retry: r})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err := e.client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: testservice.Sleeping("caller-dl", 5*time.Second, 0)})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("err %v, want DEADLINE_EXCEEDED", err)
	}
	if _, ok := errors.AsType[*resilience.TimeoutError](err); ok {
		t.Errorf("the caller's deadline reported as the attempt timeout: %v", err)
	}
	if got := e.svc.Attempts("caller-dl"); got != 1 {
		t.Errorf("server saw %d attempts, want 1", got)
	}
}

// TestRetryBudgetPerTarget checks that the default per-target budget is
// shared by the methods of one target: a budget that allows no retry stops
// every method's retries.
func TestRetryBudgetPerTarget(t *testing.T) {
	var made []string
	r := fastRetry(5)
	r.Budget = nil // the client's per-target budget
	c := newClient(t, interceptors.Config{Default: interceptors.Policy{Retry: r}, TargetBudget: func(target string) retry.Budget {
		made = append(made, target)
		return retry.NewTokenBucket(4, 0) // grants while more than 2 tokens remain
	}})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	_ = unary(ctx, e.client, testservice.Failing("b1", -1, codes.Unavailable))
	_ = idempotentUnary(ctx, e.client, testservice.Failing("b2", -1, codes.Unavailable))
	// 4 tokens: b1's first failure leaves 3 (retry), its second 2 (no
	// more). b2's first failure, on the same bucket, leaves 1: no retry.
	// With a bucket per method, b2 would have been retried once.
	if a, b := e.svc.Attempts("b1"), e.svc.Attempts("b2"); a != 2 || b != 1 {
		t.Errorf("attempts %d and %d, want 2 and 1 under one shared budget", a, b)
	}
	if len(made) != 1 || made[0] != e.srv.Target() {
		t.Errorf("budgets made for %q, want one for %q", made, e.srv.Target())
	}
}
