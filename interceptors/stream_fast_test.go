package interceptors_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// TestStreamReplayExactlyWhatWasSent: a client stream whose first attempt
// fails after reading every message is replayed on attempt 2 with exactly
// the messages sent, in order, as they were when sent (the application
// reuses one request and changes it after each send), for replays that
// fit the stream's own storage and for longer ones.
func TestStreamReplayExactlyWhatWasSent(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		c := streamPipeline(t, 3)
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		for _, n := range []int{1, 2, 3, 5} {
			ctx := ctxTimeout(t, 10*time.Second)
			st, err := e.client.ClientStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("replay%d", n)
			req := &testingv1.ClientStreamRequest{Behavior: &testingv1.Behavior{CallId: id, FailAttempts: 1, FailAfterMessages: int32(n)}}
			var want []string
			for i := range n {
				req.Payload = []byte(payload(i))
				if err := st.Send(req); err != nil {
					t.Fatalf("%d messages: send %d: %v", n, i, err)
				}
				want = append(want, payload(i))
				req.Payload = []byte("changed after send")
			}
			resp, err := st.CloseAndRecv()
			if err != nil {
				t.Fatalf("%d messages: CloseAndRecv: %v", n, err)
			}
			var got []string
			for _, p := range resp.GetPayloads() {
				got = append(got, string(p))
			}
			if resp.GetReply().GetAttempt() != 2 || !slices.Equal(got, want) {
				t.Errorf("%d messages: attempt %d read %q, want attempt 2 reading %q", n, resp.GetReply().GetAttempt(), got, want)
			}
		}
	})
}

// TestStreamServerRequestReplayedAsSent: the request of a server stream is
// replayed as it was when the stream opened, even when the application
// changes it before the retry.
func TestStreamServerRequestReplayedAsSent(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		e := newStreamEnv(t, topts, streamPipeline(t, 3).StreamClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		req := &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "asSent", FailAttempts: 1, StreamMessages: 2}, Payload: []byte("sent")}
		st, err := e.client.ServerStream(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		req.Payload = []byte("changed")
		replies, err := recvAll(st.Recv)
		if err != nil {
			t.Fatal(err)
		}
		checkReplies(t, replies, 2, 2, func(int) string { return "sent" })
	})
}

// TestStreamCommittedEnd: once a stream is committed, its messages take
// the path without the stream's lock; the stream still ends as documented
// when its context is cancelled: once the stream has ended (OnCallEnd),
// RecvMsg returns CANCELLED on every call, never one of the echoes still
// buffered, SendMsg returns io.EOF, and the bulkhead slot is free.
func TestStreamCommittedEnd(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		for round := range 10 {
			ended := make(chan struct{})
			c := newClient(t, interceptors.Config{
				Default: interceptors.Policy{Retry: fastRetry(3), Bulkhead: &interceptors.BulkheadPolicy{Limit: 1, Scope: interceptors.ScopeTarget}},
				Observer: interceptors.Observer{OnCallEnd: func(_ context.Context, info interceptors.CallInfo, _ error) {
					if info.ClientStreams { // the bidi stream, not the next one
						close(ended)
					}
				}},
			})
			e := newStreamEnv(t, topts, c.StreamClientInterceptor())
			ctx, cancel := context.WithCancel(ctxTimeout(t, 10*time.Second))
			st, err := e.client.BidiStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			b := &testingv1.Behavior{CallId: "committed"}
			for i := range 5 {
				if err := st.Send(&testingv1.BidiStreamRequest{Behavior: b, Payload: []byte(payload(i))}); err != nil {
					t.Fatalf("round %d: send %d: %v", round, i, err)
				}
				r, err := st.Recv()
				if err != nil {
					t.Fatalf("round %d: recv %d: %v", round, i, err)
				}
				if string(r.GetReply().GetPayload()) != payload(i) || r.GetReply().GetSequence() != int32(i) {
					t.Fatalf("round %d: echo %d: %v", round, i, r)
				}
			}
			for i := range 5 { // echoed, never received
				if err := st.Send(&testingv1.BidiStreamRequest{Payload: []byte(payload(i))}); err != nil {
					t.Fatalf("round %d: send %d: %v", round, i, err)
				}
			}
			cancel()
			<-ended
			for i := range 3 {
				if r, err := st.Recv(); status.Code(err) != codes.Canceled {
					t.Fatalf("round %d: Recv %d after the end: %v, %v; want CANCELLED", round, i, r, err)
				}
			}
			if err := st.Send(&testingv1.BidiStreamRequest{}); !errors.Is(err, io.EOF) {
				t.Errorf("round %d: Send after the end: %v, want io.EOF", round, err)
			}
			next, err := e.client.ServerStream(ctxTimeout(t, 10*time.Second), &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "next", StreamMessages: 1}})
			if err != nil {
				t.Fatalf("round %d: next stream: %v, want the ended stream's slot free", round, err)
			}
			if _, err := recvAll(next.Recv); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestStreamAttemptsEndWithoutCallerCancel: streams whose caller never
// cancels (context.Background) leave nothing running once they end, the
// attempts they retried included: a failed server stream, a bidi stream
// replayed after its first attempt failed, a stream committed to its first
// attempt, and a stream ended by gRPC refusing a message.
func TestStreamAttemptsEndWithoutCallerCancel(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		e := newStreamEnv(t, topts, streamPipeline(t, 3).StreamClientInterceptor())
		ctx := context.Background()
		if _, err := e.client.Unary(ctx, &testingv1.UnaryRequest{}); err != nil { // connect
			t.Fatal(err)
		}
		ignore := goleak.IgnoreCurrent()

		st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "s", FailAttempts: 1, StreamMessages: 2}})
		if err != nil {
			t.Fatal(err)
		}
		if replies, err := recvAll(st.Recv); err != nil || len(replies) != 2 {
			t.Fatalf("server stream: %d replies, %v", len(replies), err)
		}

		bidi, err := e.client.BidiStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b := &testingv1.Behavior{CallId: "b", FailAttempts: 2}
		for i := range 3 {
			if err := bidi.Send(&testingv1.BidiStreamRequest{Behavior: b, Payload: []byte(payload(i))}); err != nil {
				t.Fatalf("bidi send %d: %v", i, err)
			}
		}
		if err := bidi.CloseSend(); err != nil {
			t.Fatal(err)
		}
		replies, err := recvAll(bidi.Recv)
		if err != nil {
			t.Fatal(err)
		}
		checkBidiEchoes(t, replies, 3, 3)

		failed, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "f", FailAttempts: 1, FailAfterMessages: 1, StreamMessages: 1}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := recvAll(failed.Recv); status.Code(err) != codes.Unavailable {
			t.Fatalf("stream committed to its failing attempt: %v, want UNAVAILABLE", err)
		}

		big, err := e.client.BidiStream(ctx, grpc.MaxCallSendMsgSize(64))
		if err != nil {
			t.Fatal(err)
		}
		if err := big.Send(&testingv1.BidiStreamRequest{Payload: make([]byte, 128)}); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("oversized message: %v, want RESOURCE_EXHAUSTED", err)
		}
		if _, err := big.Recv(); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("Recv after the refused message: %v, want RESOURCE_EXHAUSTED", err)
		}

		// The servers' handlers and gRPC's goroutines end on their own
		// goroutines: wait for them, within a generous bound.
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := goleak.Find(ignore)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("goroutines left running: %v", err)
			}
		}
	})
}

// TestStreamWrapperAllocations checks the allocation goals of the stream
// wrapper over in-process streams: no allocation per message on a
// committed stream, received or sent, and at most seven per stream beyond
// the stream's own: the wrapper, the watch on the stream's context and its
// func, the attempt's context and its cancel func, and the clone of the
// request kept for replay.
func TestStreamWrapperAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	ics := streamInterceptors(t)
	allocs := make(map[string]float64)
	for _, c := range ics {
		streamer := memStreamer(1)
		req := &testingv1.ServerStreamRequest{}
		var m testingv1.ServerStreamResponse
		allocs[c.name] = testing.AllocsPerRun(200, func() {
			if err := openInProcess(ctx, c.ic, streamer, req, &m); err != nil {
				t.Fatal(err)
			}
		})

		cs, err := c.ic(ctx, bidiStreamDesc, nil, testingv1.TestService_BidiStream_FullMethodName, memStreamer(-1))
		if err != nil {
			t.Fatal(err)
		}
		breq := &testingv1.BidiStreamRequest{}
		var bm testingv1.BidiStreamResponse
		if err := cs.SendMsg(breq); err != nil { // before commit: recorded
			t.Fatal(err)
		}
		if err := cs.RecvMsg(&bm); err != nil { // commits
			t.Fatal(err)
		}
		if got := testing.AllocsPerRun(200, func() {
			if err := cs.SendMsg(breq); err != nil {
				t.Fatal(err)
			}
			if err := cs.RecvMsg(&bm); err != nil {
				t.Fatal(err)
			}
		}); got != 0 {
			t.Errorf("%s: %v allocations per message, want 0", c.name, got)
		}
	}
	for name, got := range allocs {
		if extra := got - allocs["bare"]; extra > 7 {
			t.Errorf("%s: %v allocations per stream beyond bare, want at most 7", name, extra)
		}
	}
}

// TestStreamCommittedConcurrentCancel: on committed bidi streams, one
// goroutine sends while another receives without the stream's lock, and
// the caller cancels midway: the receiver gets echoes in order, with no
// gap or duplicate, then CANCELLED (or io.EOF when the server had already
// ended the stream, as gRPC reports it without the interceptor too), once
// OnCallEnd was called, once; the sender stops; and the stream's bulkhead
// slot is free for the next stream. Run under -race.
func TestStreamCommittedConcurrentCancel(t *testing.T) {
	const n = 200
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		var ends atomic.Int32 // OnCallEnd of the bidi streams
		c := newClient(t, interceptors.Config{
			Default: interceptors.Policy{Retry: fastRetry(3), Bulkhead: &interceptors.BulkheadPolicy{Limit: 1, Scope: interceptors.ScopeTarget}},
			Observer: interceptors.Observer{OnCallEnd: func(_ context.Context, info interceptors.CallInfo, _ error) {
				if info.ClientStreams {
					ends.Add(1)
				}
			}},
		})
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		defer func() {
			if got := ends.Load(); got != 8 {
				t.Errorf("OnCallEnd called %d times for 8 streams", got)
			}
		}()
		for round := range 8 {
			ctx, cancel := context.WithCancel(ctxTimeout(t, 10*time.Second))
			t.Cleanup(cancel)
			st, err := e.client.BidiStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			sendErr := make(chan error, 1)
			go func() {
				b := &testingv1.Behavior{CallId: fmt.Sprintf("cc%d", round)}
				for i := range n {
					if err := st.Send(&testingv1.BidiStreamRequest{Behavior: b, Payload: []byte(payload(i))}); err != nil {
						sendErr <- err
						return
					}
				}
				sendErr <- st.CloseSend()
			}()
			cancelAt := 10 + round*20
			var recvErr error
			for i := 0; ; i++ {
				if i == cancelAt {
					cancel()
				}
				r, err := st.Recv()
				if err != nil {
					recvErr = err
					break
				}
				if string(r.GetReply().GetPayload()) != payload(i) || r.GetReply().GetSequence() != int32(i) {
					t.Fatalf("round %d: echo %d is %v", round, i, r)
				}
			}
			if status.Code(recvErr) != codes.Canceled && !errors.Is(recvErr, io.EOF) {
				t.Errorf("round %d: stream ended with %v, want CANCELLED or io.EOF", round, recvErr)
			}
			if got := ends.Load(); got != int32(round+1) {
				t.Fatalf("round %d: RecvMsg returned the end with OnCallEnd called %d times for %d streams", round, got, round+1)
			}
			if err := <-sendErr; err != nil && !errors.Is(err, io.EOF) {
				t.Errorf("round %d: sender stopped with %v, want io.EOF or nil", round, err)
			}
			next, err := e.client.ServerStream(ctxTimeout(t, 10*time.Second), &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "next", StreamMessages: 1}})
			if err != nil {
				t.Fatalf("round %d: next stream: %v, want the ended stream's slot free", round, err)
			}
			if _, err := recvAll(next.Recv); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestStreamSlowCallsOpenBreaker: a stream's duration, for the breaker's
// slow-call detection, is the time to its first response: streams whose
// server waits before its first message count as slow and open the
// breaker, which then rejects the next stream.
func TestStreamSlowCallsOpenBreaker(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{
		Retry: fastRetry(1),
		Breaker: &interceptors.BreakerPolicy{
			SlowCallDuration: 20 * time.Millisecond, SlowCallRateThreshold: 50,
			WindowSize: 4, MinimumCalls: 4, OpenDuration: time.Hour,
		},
	})
	e := newStreamEnv(t, nil, c.StreamClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	slow := &testingv1.Behavior{CallId: "slow", StreamMessages: 1, Sleep: durationpb.New(40 * time.Millisecond)}
	for i := range 4 {
		st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: slow})
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if replies, err := recvAll(st.Recv); err != nil || len(replies) != 1 {
			t.Fatalf("stream %d: %d replies, %v", i, len(replies), err)
		}
	}
	_, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "after", StreamMessages: 1}})
	if !errors.Is(err, resilience.ErrCircuitOpen) {
		t.Fatalf("stream after four slow ones: %v, want the open circuit", err)
	}
}

// TestStreamLongLivedNotSlow: a stream's duration, for the breaker's
// slow-call detection, is the time to its first response, not its whole
// life, whether it retries (committed by its first message) or makes a
// single attempt (committed from the start): long-lived bidi streams that
// answer at once and then stay open past SlowCallDuration never open the
// breaker. The streams stay open for a real duration, since that is what
// is measured.
func TestStreamLongLivedNotSlow(t *testing.T) {
	for _, attempts := range []int{1, 3} {
		t.Run(fmt.Sprintf("attempts=%d", attempts), func(t *testing.T) {
			c := newPipeline(t, interceptors.Policy{
				Retry: fastRetry(attempts),
				Breaker: &interceptors.BreakerPolicy{
					SlowCallDuration: 250 * time.Millisecond, SlowCallRateThreshold: 50,
					WindowSize: 4, MinimumCalls: 4, OpenDuration: time.Hour,
				},
			})
			e := newStreamEnv(t, nil, c.StreamClientInterceptor())
			ctx := ctxTimeout(t, 10*time.Second)
			for i := range 4 {
				st, err := e.client.BidiStream(ctx)
				if err != nil {
					t.Fatalf("stream %d: %v", i, err)
				}
				if err := st.Send(&testingv1.BidiStreamRequest{Behavior: &testingv1.Behavior{CallId: fmt.Sprintf("long%d", i)}}); err != nil {
					t.Fatalf("stream %d: send: %v", i, err)
				}
				if _, err := st.Recv(); err != nil {
					t.Fatalf("stream %d: recv: %v", i, err)
				}
				time.Sleep(400 * time.Millisecond) // the stream's long life
				if err := st.CloseSend(); err != nil {
					t.Fatal(err)
				}
				if _, err := st.Recv(); !errors.Is(err, io.EOF) {
					t.Fatalf("stream %d: end: %v, want io.EOF", i, err)
				}
			}
			// The breaker is the method's: the next bidi stream finds it
			// closed.
			st, err := e.client.BidiStream(ctx)
			if err != nil {
				t.Fatalf("stream after four long-lived ones: %v, want the breaker closed", err)
			}
			if err := st.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); !errors.Is(err, io.EOF) {
				t.Fatalf("stream after four long-lived ones: %v, want io.EOF", err)
			}
		})
	}
}

// TestStreamRetriedNotSlow: a stream's duration, for the breaker's
// slow-call detection, is the time from its attempt's start to that
// attempt's first response: an attempt that echoed a message nobody read
// and failed is retried, and the first response of the retry is the one
// that counts, so long-lived streams that answer at once after such a
// retry never open the breaker. The streams stay open for a real
// duration, since that is what is measured.
func TestStreamRetriedNotSlow(t *testing.T) {
	c := newPipeline(t, interceptors.Policy{
		Retry: fastRetry(3),
		Breaker: &interceptors.BreakerPolicy{
			FailureThreshold: 100, FailureRateThreshold: 100,
			SlowCallDuration: 250 * time.Millisecond, SlowCallRateThreshold: 50,
			WindowSize: 8, MinimumCalls: 8, OpenDuration: time.Hour,
		},
	})
	e := newStreamEnv(t, nil, c.StreamClientInterceptor())
	ctx := ctxTimeout(t, 20*time.Second)
	for i := range 4 {
		id := fmt.Sprintf("drained%d", i)
		st, err := e.client.BidiStream(ctx)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		// Attempt 1 echoes the first message, reads the second and
		// fails; the sends that follow, with nobody receiving, find it
		// over, read its echo and status, and retry.
		b := &testingv1.Behavior{CallId: id, FailAttempts: 1, FailAfterMessages: 1}
		deadline := time.Now().Add(10 * time.Second)
		for e.svc.Attempts(id) < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("stream %d: no second attempt", i)
			}
			if err := st.Send(&testingv1.BidiStreamRequest{Behavior: b}); err != nil {
				t.Fatalf("stream %d: send: %v", i, err)
			}
		}
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("stream %d: recv: %v", i, err)
		}
		if r.GetReply().GetAttempt() != 2 {
			t.Fatalf("stream %d: first echo from attempt %d, want 2", i, r.GetReply().GetAttempt())
		}
		time.Sleep(400 * time.Millisecond) // the stream's long life
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := recvAll(st.Recv); err != nil {
			t.Fatalf("stream %d: end: %v", i, err)
		}
	}
	st, err := e.client.BidiStream(ctx)
	if err != nil {
		t.Fatalf("stream after four long-lived ones: %v, want the breaker closed", err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream after four long-lived ones: %v, want io.EOF", err)
	}
}

// TestStreamCommittedSendAfterCloseSend: on a committed stream, whether
// committed by its first echo or from the start (a single attempt), a
// send after CloseSend fails with INTERNAL and leaves the stream as it
// was: the application still reads it to its successful end.
func TestStreamCommittedSendAfterCloseSend(t *testing.T) {
	for _, attempts := range []int{1, 3} {
		t.Run(fmt.Sprintf("attempts=%d", attempts), func(t *testing.T) {
			e := newStreamEnv(t, nil, streamPipeline(t, attempts).StreamClientInterceptor())
			ctx := ctxTimeout(t, 10*time.Second)
			st, err := e.client.BidiStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			req := &testingv1.BidiStreamRequest{Behavior: &testingv1.Behavior{CallId: "closed"}, Payload: []byte("a")}
			if err := st.Send(req); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); err != nil { // commits
				t.Fatal(err)
			}
			if err := st.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if err := st.Send(req); status.Code(err) != codes.Internal {
				t.Errorf("send after CloseSend: %v, want INTERNAL", err)
			}
			if replies, err := recvAll(st.Recv); err != nil || len(replies) != 0 {
				t.Errorf("after the refused send: %d more replies, %v; want the stream's successful end", len(replies), err)
			}
		})
	}
}
