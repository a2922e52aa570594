package interceptors_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// hedging is a hedging policy without a budget.
func hedging(extra int, delay time.Duration, nonFatal ...codes.Code) *interceptors.HedgingPolicy {
	return &interceptors.HedgingPolicy{MaxExtraAttempts: extra, Delay: delay, NonFatalCodes: nonFatal, Budget: interceptors.NoBudget}
}

// TestHedgingReturnsTheFastAnswerAndCancelsTheSlow checks that when the
// first attempt is slow, the hedge sent after the delay answers, carries
// grpc-previous-rpc-attempts, and the server sees the slow attempt
// cancelled.
func TestHedgingReturnsTheFastAnswerAndCancelsTheSlow(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		// The hedging delay is long enough for the fast hedge to answer
		// before a third attempt is due, even on a loaded machine.
		c := newPipeline(t, interceptors.Policy{Hedging: hedging(2, 300*time.Millisecond)})
		e := newEnv(t, topts, c.UnaryClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		start := time.Now()
		resp, err := e.client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: testservice.Sleeping("h", 5*time.Second, 1), Payload: []byte("p")})
		if err != nil {
			t.Fatal(err)
		}
		elapsed := time.Since(start)
		r := resp.GetReply()
		if r.GetAttempt() != 2 || r.GetPreviousRpcAttempts() != "1" || string(r.GetPayload()) != "p" {
			t.Errorf("reply %+v, want attempt 2's, with grpc-previous-rpc-attempts 1", r)
		}
		if elapsed < 300*time.Millisecond || elapsed > 3*time.Second {
			t.Errorf("took %v: want after the hedging delay, long before the slow attempt", elapsed)
		}
		// The slow attempt's handler returns because its context was
		// cancelled, not because it slept its 5s.
		for {
			got := waitFor(t, e.log.ended, 5*time.Second, "the slow attempt to end")
			if got.previous != "" {
				continue // the hedge
			}
			if got.code != codes.Canceled || !errors.Is(got.ctxErr, context.Canceled) || got.end.Sub(got.start) > 3*time.Second {
				t.Errorf("slow attempt ended with %v (ctx %v) after %v, want cancelled early", got.code, got.ctxErr, got.end.Sub(got.start))
			}
			break
		}
		if got := e.svc.Attempts("h"); got != 2 {
			t.Errorf("server saw %d attempts, want 2 (the third was not needed)", got)
		}
	})
}

// TestHedgingOnlyForIdempotentMethods checks that a non-idempotent method
// is never hedged, unless the call declares itself idempotent.
func TestHedgingOnlyForIdempotentMethods(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{Hedging: hedging(1, 0)})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	if err := unary(ctx, e.client, testservice.Sleeping("plain", 100*time.Millisecond, 1)); err != nil {
		t.Fatal(err)
	}
	if got := e.svc.Attempts("plain"); got != 1 {
		t.Errorf("non-idempotent method: server saw %d attempts, want 1", got)
	}
	resp, err := e.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Sleeping("declared", 5*time.Second, 1)}, interceptors.WithIdempotency(interceptors.AlwaysIdempotent))
	if err != nil || resp.GetReply().GetAttempt() != 2 {
		t.Errorf("declared idempotent: %v, %v; want the hedge to answer", resp.GetReply(), err)
	}
}

// TestHedgingErrors checks a fatal error (ends the call at once), non-fatal
// errors on every attempt (exhausted), and a pushback veto (no further
// hedge).
func TestHedgingErrors(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{Hedging: hedging(2, time.Hour, codes.Unavailable)})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)

	err := idempotentUnary(ctx, e.client, testservice.Failing("fatal", -1, codes.Internal))
	if status.Code(err) != codes.Internal || e.svc.Attempts("fatal") != 1 {
		t.Errorf("fatal: err %v after %d attempts, want INTERNAL after 1", err, e.svc.Attempts("fatal"))
	}

	// UNAVAILABLE is non-fatal: each failure starts the next attempt at
	// once, without waiting for the hour-long delay.
	err = idempotentUnary(ctx, e.client, testservice.Failing("nonfatal", -1, codes.Unavailable))
	if ex, ok := errors.AsType[*resilience.RetriesExhaustedError](err); !ok || ex.Attempts != 3 || status.Code(err) != codes.Unavailable {
		t.Errorf("non-fatal: err %v, want UNAVAILABLE exhausted after 3", err)
	}
	if got := e.svc.Attempts("nonfatal"); got != 3 {
		t.Errorf("non-fatal: server saw %d attempts, want 3", got)
	}

	err = idempotentUnary(ctx, e.client, &testingv1.Behavior{CallId: "veto", FailAttempts: -1, PushbackMs: "-1"})
	if status.Code(err) != codes.Unavailable || e.svc.Attempts("veto") != 1 {
		t.Errorf("veto: err %v after %d attempts, want UNAVAILABLE after 1", err, e.svc.Attempts("veto"))
	}

	// A non-fatal failure followed by success.
	resp, err := e.client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: testservice.Failing("recover", 1, codes.Unavailable)})
	if err != nil || resp.GetReply().GetAttempt() != 2 {
		t.Errorf("recover: %v, %v; want attempt 2 to answer", resp.GetReply(), err)
	}
}

// TestHedgingAtPercentile checks that once enough latencies are known,
// the hedge goes out at the observed percentile instead of the fixed delay.
func TestHedgingAtPercentile(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{Hedging: &interceptors.HedgingPolicy{
		MaxExtraAttempts: 1, Delay: time.Hour, Percentile: 90, MinSamples: 5, Budget: interceptors.NoBudget,
	}})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	for i := range 5 {
		if err := idempotentUnary(ctx, e.client, testservice.Failing(fmt.Sprint("warm", i), 0, codes.OK)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := e.client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: testservice.Sleeping("p90", 5*time.Second, 1)})
	if err != nil || resp.GetReply().GetAttempt() != 2 {
		t.Errorf("%v, %v; want the hedge at the fast p90 to answer", resp.GetReply(), err)
	}
}

// TestHedgingConcurrentCallsNoRace runs hedged calls concurrently, all of
// which send both attempts at once, and checks every caller gets its own
// answer; under -race it also checks that the reply copy does not race.
func TestHedgingConcurrentCallsNoRace(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{Hedging: hedging(1, 0)})
	e := newEnv(t, nil, c.UnaryClientInterceptor())
	ctx := ctxTimeout(t, 20*time.Second)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			id := fmt.Sprint("c", i)
			resp, err := e.client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: testservice.Failing(id, 0, codes.OK), Payload: []byte(id)})
			if err != nil {
				t.Error(err)
				return
			}
			if r := resp.GetReply(); r.GetCallId() != id || string(r.GetPayload()) != id {
				t.Errorf("call %s got reply %+v", id, r)
			}
		})
	}
	wg.Wait()
}

// TestHedgingPlainReplyCopy checks the reply copy for a reply that is not
// a proto message, over an in-process invoker whose second attempt answers.
func TestHedgingPlainReplyCopy(t *testing.T) {
	type answer struct{ From int }
	c := newPipeline(t, interceptors.Policy{Hedging: hedging(1, 0), Idempotency: interceptors.AlwaysIdempotent})
	invoker := func(ctx context.Context, _ string, _, reply any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		if _, hedge := previousAttempts(ctx); !hedge {
			<-ctx.Done() // the first attempt waits to be cancelled
			return status.FromContextError(ctx.Err()).Err()
		}
		reply.(*answer).From = 2
		return nil
	}
	var got answer
	if err := c.UnaryClientInterceptor()(ctxTimeout(t, 5*time.Second), "/x.Y/Z", nil, &got, nil, invoker); err != nil {
		t.Fatal(err)
	}
	if got.From != 2 {
		t.Errorf("reply %+v, want the hedge's", got)
	}
}

// TestHedgeLaunchLeavesTheCallersReplyAlone checks that launching a hedge
// does not read the caller's reply message while attempt 1 decodes into
// it: under -race, any such read is reported. Attempt 1 keeps decoding
// until the hedge has started.
func TestHedgeLaunchLeavesTheCallersReplyAlone(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{Hedging: hedging(1, time.Millisecond), Idempotency: interceptors.AlwaysIdempotent})
	hedgeStarted := make(chan struct{})
	invoker := func(ctx context.Context, _ string, _, reply any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		m := reply.(proto.Message)
		if _, hedge := previousAttempts(ctx); hedge {
			close(hedgeStarted)
			proto.Merge(m, &testingv1.UnaryResponse{Reply: &testingv1.Reply{Attempt: 2}})
			return nil
		}
		for {
			proto.Reset(m)
			proto.Merge(m, &testingv1.UnaryResponse{Reply: &testingv1.Reply{Attempt: 1}})
			select {
			case <-hedgeStarted:
				<-ctx.Done() // the hedge wins; this attempt is cancelled
				return status.FromContextError(ctx.Err()).Err()
			default:
			}
		}
	}
	var got testingv1.UnaryResponse
	if err := c.UnaryClientInterceptor()(ctxTimeout(t, 5*time.Second), "/x.Y/Z", nil, &got, nil, invoker); err != nil {
		t.Fatal(err)
	}
	if got.GetReply().GetAttempt() != 2 {
		t.Errorf("reply %v, want the hedge's", got.GetReply())
	}
}
