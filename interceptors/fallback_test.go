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

// cached answers Unary calls from a "cache" and records the errors it saw.
type cached struct{ seen []error }

func (c *cached) answer(_ context.Context, method string, _, reply any, err error) error {
	c.seen = append(c.seen, err)
	if method != testingv1.TestService_Unary_FullMethodName {
		return err
	}
	reply.(*testingv1.UnaryResponse).Reply = &testingv1.Reply{CallId: "from-cache"}
	return nil
}

// TestFallback checks that the fallback answers calls that fail with its
// codes, after the retries and on an open circuit, that it sees the final
// error, and that other codes go through unchanged.
func TestFallback(t *testing.T) {
	cache := &cached{}
	c := newPipeline(t, interceptors.Policy{
		Retry:    fastRetry(2),
		Breaker:  &interceptors.BreakerPolicy{FailureThreshold: 2, OpenDuration: time.Hour},
		Fallback: &interceptors.FallbackPolicy{Func: cache.answer},
	})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)

	resp, err := e.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Failing("down", -1, codes.Unavailable)})
	if err != nil || resp.GetReply().GetCallId() != "from-cache" {
		t.Fatalf("got %v, %v; want the cached answer", resp.GetReply(), err)
	}
	if e.svc.Attempts("down") != 2 {
		t.Errorf("server saw %d attempts, want both retries before the fallback", e.svc.Attempts("down"))
	}
	if _, ok := errors.AsType[*resilience.RetriesExhaustedError](cache.seen[0]); !ok {
		t.Errorf("fallback saw %v, want the final, exhausted error", cache.seen[0])
	}

	// The breaker is open now: the fallback answers without a server hit.
	resp, err = e.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Failing("open", 0, codes.OK)})
	if err != nil || resp.GetReply().GetCallId() != "from-cache" || e.svc.Attempts("open") != 0 {
		t.Errorf("got %v, %v; want the cached answer without a server hit", resp.GetReply(), err)
	}
	if !errors.Is(cache.seen[1], resilience.ErrCircuitOpen) {
		t.Errorf("fallback saw %v, want the open circuit", cache.seen[1])
	}

	// A code the fallback is not for, on another method: unchanged.
	err = idempotentUnary(ctx, e.client, testservice.Failing("bad", -1, codes.InvalidArgument))
	if status.Code(err) != codes.InvalidArgument || len(cache.seen) != 2 {
		t.Errorf("err %v, fallback calls %d; want INVALID_ARGUMENT without fallback", err, len(cache.seen))
	}
	// The fallback's own error is a status.
	err = idempotentUnary(ctx, e.client, testservice.Failing("fb-err", -1, codes.Unavailable))
	if status.Code(err) != codes.Unavailable || len(cache.seen) != 3 {
		t.Errorf("err %v, want the UNAVAILABLE the fallback returned", err)
	}
}

// TestFallbackIf checks the If predicate and a fallback error that is not
// a status.
func TestFallbackIf(t *testing.T) {
	errNoCache := errors.New("no cache entry")
	c := newPipeline(t, interceptors.Policy{Fallback: &interceptors.FallbackPolicy{
		If:   func(err error) bool { return status.Code(err) == codes.NotFound },
		Func: func(context.Context, string, any, any, error) error { return errNoCache },
	}})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	err := unary(ctx, e.client, testservice.Failing("nf", -1, codes.NotFound))
	if !errors.Is(err, errNoCache) || status.Code(err) != codes.Unknown {
		t.Errorf("err %v, want UNKNOWN wrapping the fallback's error", err)
	}
	// With If set and no Codes, UNAVAILABLE does not fall back.
	if err := unary(ctx, e.client, testservice.Failing("u", -1, codes.Unavailable)); status.Code(err) != codes.Unavailable || errors.Is(err, errNoCache) {
		t.Errorf("err %v, want UNAVAILABLE untouched", err)
	}
}

// TestDefaultTimeout checks that a call without a deadline gets the
// default one, reported as a *resilience.TimeoutError, and that a call
// with its own deadline keeps it.
func TestDefaultTimeout(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{DefaultTimeout: 100 * time.Millisecond})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	err := unary(context.Background(), e.client, testservice.Sleeping("dt", 5*time.Second, 0))
	checkAttemptTimeout(t, err, 100*time.Millisecond)
	if err := unary(ctxTimeout(t, 10*time.Second), e.client, testservice.Sleeping("own", 300*time.Millisecond, 0)); err != nil {
		t.Errorf("a call with its own, longer deadline: %v", err)
	}
	// A client whose policy sets the default timeout alone.
	tm := newPipeline(t, interceptors.Policy{DefaultTimeout: 100 * time.Millisecond})
	e2 := newEnv(t, nil, tm.UnaryClientInterceptor())
	checkAttemptTimeout(t, unary(context.Background(), e2.client, testservice.Sleeping("dt2", 5*time.Second, 0)), 100*time.Millisecond)
}
