package interceptors_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// streamEntry is one streaming attempt as a server interceptor saw it:
// the payloads it read, in order.
type streamEntry struct {
	method   string
	previous string
	payloads []string
}

// streamLog records every streaming attempt the server handles and the
// messages each one read.
type streamLog struct {
	mu      sync.Mutex
	entries []*streamEntry
}

type payloaded interface{ GetPayload() []byte }

// countingStream records the payloads the handler reads.
type countingStream struct {
	grpc.ServerStream
	log *streamLog
	e   *streamEntry
}

func (s *countingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		if p, ok := m.(payloaded); ok {
			s.log.mu.Lock()
			s.e.payloads = append(s.e.payloads, string(p.GetPayload()))
			s.log.mu.Unlock()
		}
	}
	return err
}

func (l *streamLog) interceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		e := &streamEntry{method: info.FullMethod}
		if md, ok := metadata.FromIncomingContext(ss.Context()); ok {
			if v := md.Get(testservice.PreviousAttemptsHeader); len(v) > 0 {
				e.previous = v[0]
			}
		}
		l.mu.Lock()
		l.entries = append(l.entries, e)
		l.mu.Unlock()
		return handler(srv, &countingStream{ServerStream: ss, log: l, e: e})
	}
}

// attempts returns a copy of what each attempt read, in arrival order.
func (l *streamLog) attempts() []streamEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]streamEntry, len(l.entries))
	for i, e := range l.entries {
		out[i] = streamEntry{method: e.method, previous: e.previous, payloads: slices.Clone(e.payloads)}
	}
	return out
}

// streamEnv is a test server with a client connection through stream
// interceptors.
type streamEnv struct {
	srv    *testservice.Server
	svc    *testservice.Service
	log    *streamLog
	client testingv1.TestServiceClient
}

func newStreamEnv(t *testing.T, topts []testservice.Option, ints ...grpc.StreamClientInterceptor) *streamEnv {
	t.Helper()
	log := &streamLog{}
	opts := append([]testservice.Option{testservice.WithServerOptions(grpc.ChainStreamInterceptor(log.interceptor()))}, topts...)
	srv := testservice.StartTB(t, opts...)
	conn := srv.DialTB(t, grpc.WithDisableRetry(), grpc.WithChainStreamInterceptor(ints...))
	return &streamEnv{srv: srv, svc: srv.Service(), log: log, client: testingv1.NewTestServiceClient(conn)}
}

// streamPipeline is a pipeline that retries streams up to attempts times
// with short waits, with a breaker that does not trip during a test.
func streamPipeline(t testing.TB, attempts int) *interceptors.Client {
	return newPipeline(t, interceptors.Policy{
		Retry:   fastRetry(attempts),
		Breaker: &interceptors.BreakerPolicy{FailureThreshold: 100, OpenDuration: time.Hour},
	})
}

// recvAll receives a server stream to its end and returns the replies and
// the final error (nil for io.EOF).
func recvAll[T interface{ GetReply() *testingv1.Reply }](recv func() (T, error)) ([]*testingv1.Reply, error) {
	var out []*testingv1.Reply
	for {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m.GetReply())
	}
}

// checkReplies checks that replies are the messages 0..n-1 of attempt, in
// order, each echoing the payload want(i).
func checkReplies(t *testing.T, replies []*testingv1.Reply, n, attempt int, want func(i int) string) {
	t.Helper()
	if len(replies) != n {
		t.Fatalf("got %d messages, want %d: %v", len(replies), n, replies)
	}
	for i, r := range replies {
		if int(r.GetSequence()) != i || int(r.GetAttempt()) != attempt || string(r.GetPayload()) != want(i) {
			t.Errorf("message %d = seq %d attempt %d payload %q, want seq %d attempt %d payload %q",
				i, r.GetSequence(), r.GetAttempt(), r.GetPayload(), i, attempt, want(i))
		}
	}
}

func payload(i int) string { return "p" + strconv.Itoa(i) }

// TestStreamServerRetriedBeforeFirstMessage: a server stream whose first
// attempt fails before sending anything is retried transparently; the
// application sees exactly the messages of attempt 2, in order, and
// attempt 2 carried grpc-previous-rpc-attempts.
func TestStreamServerRetriedBeforeFirstMessage(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		c := streamPipeline(t, 3)
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		b := &testingv1.Behavior{CallId: "s", FailAttempts: 1, FailAfterMessages: 0, StreamMessages: 5}
		st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: b, Payload: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		replies, err := recvAll(st.Recv)
		if err != nil {
			t.Fatalf("stream failed: %v", err)
		}
		checkReplies(t, replies, 5, 2, func(int) string { return "x" })
		if replies[0].GetPreviousRpcAttempts() != "1" {
			t.Errorf("grpc-previous-rpc-attempts = %q, want 1", replies[0].GetPreviousRpcAttempts())
		}
		if got := e.svc.Attempts("s"); got != 2 {
			t.Errorf("server saw %d attempts, want 2", got)
		}
		if m := c.Breaker(e.srv.Target(), testingv1.TestService_ServerStream_FullMethodName).Metrics(); m.Failures != 1 || m.Successes != 1 {
			t.Errorf("breaker counted %d failures, %d successes; want 1 and 1", m.Failures, m.Successes)
		}
	})
}

// TestStreamServerCommittedAfterMessages: a server stream that fails after
// 3 messages delivers exactly those 3, then the attempt's status as it is;
// it is not retried, since the application has seen messages.
func TestStreamServerCommittedAfterMessages(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		c := streamPipeline(t, 3)
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		b := &testingv1.Behavior{CallId: "s", FailAttempts: 1, FailAfterMessages: 3, StreamMessages: 5, FailMessage: "boom"}
		st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: b, Payload: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		replies, err := recvAll(st.Recv)
		checkReplies(t, replies, 3, 1, func(int) string { return "x" })
		if s, ok := status.FromError(err); !ok || s.Code() != codes.Unavailable || s.Message() != "boom" {
			t.Errorf("err = %v, want the server's UNAVAILABLE boom", err)
		}
		if _, ok := errors.AsType[*resilience.RetriesExhaustedError](err); ok {
			t.Errorf("err %v says retries were exhausted; the stream was committed", err)
		}
		if got := e.svc.Attempts("s"); got != 1 {
			t.Errorf("server saw %d attempts, want 1", got)
		}
		// Later calls keep returning the final error.
		if _, again := st.Recv(); status.Code(again) != codes.Unavailable {
			t.Errorf("Recv after the end = %v, want UNAVAILABLE again", again)
		}
	})
}

// TestStreamClientReplay: a client stream whose first attempt fails after
// reading 2 of 3 messages is retried with the 3 replayed; attempt 2 reads
// each exactly once, in order, and answers with all of them. The
// application reuses and mutates one request message between sends,
// which must not change what is replayed.
func TestStreamClientReplay(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		c := streamPipeline(t, 3)
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		st, err := e.client.ClientStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		req := &testingv1.ClientStreamRequest{Behavior: &testingv1.Behavior{CallId: "c", FailAttempts: 1, FailAfterMessages: 2}}
		for i := range 3 {
			req.Payload = []byte(payload(i))
			if err := st.Send(req); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		resp, err := st.CloseAndRecv()
		if err != nil {
			t.Fatalf("CloseAndRecv: %v", err)
		}
		if resp.GetReply().GetAttempt() != 2 {
			t.Errorf("answered by attempt %d, want 2", resp.GetReply().GetAttempt())
		}
		want := []string{"p0", "p1", "p2"}
		var got []string
		for _, p := range resp.GetPayloads() {
			got = append(got, string(p))
		}
		if !slices.Equal(got, want) {
			t.Errorf("payloads %q, want %q", got, want)
		}
		atts := e.log.attempts()
		if len(atts) != 2 {
			t.Fatalf("server saw %d attempts, want 2", len(atts))
		}
		if !slices.Equal(atts[0].payloads, want[:2]) {
			t.Errorf("attempt 1 read %q, want %q", atts[0].payloads, want[:2])
		}
		if !slices.Equal(atts[1].payloads, want) || atts[1].previous != "1" {
			t.Errorf("attempt 2 read %q with previous attempts %q, want %q and 1", atts[1].payloads, atts[1].previous, want)
		}
	})
}

// TestStreamBidiReplay: a bidi stream whose first attempt fails before its
// first echo is retried; every message is echoed once, by attempt 2.
func TestStreamBidiReplay(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		c := streamPipeline(t, 3)
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		st, err := e.client.BidiStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b := &testingv1.Behavior{CallId: "b", FailAttempts: 1, FailAfterMessages: 0}
		for i := range 3 {
			if err := st.Send(&testingv1.BidiStreamRequest{Behavior: b, Payload: []byte(payload(i))}); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		replies, err := recvAll(st.Recv)
		if err != nil {
			t.Fatalf("stream failed: %v", err)
		}
		// The service echoes each request with the first request's payload
		// numbered by sequence; payloads come from each request in turn.
		checkBidiEchoes(t, replies, 3, 2)
		atts := e.log.attempts()
		if len(atts) != 2 || !slices.Equal(atts[1].payloads, []string{"p0", "p1", "p2"}) {
			t.Errorf("server attempts %+v, want 2 with the second reading p0 p1 p2", atts)
		}
	})
}

// checkBidiEchoes checks that replies echo p0..p(n-1) once each, in order,
// all from attempt.
func checkBidiEchoes(t *testing.T, replies []*testingv1.Reply, n, attempt int) {
	t.Helper()
	if len(replies) != n {
		t.Fatalf("got %d echoes, want %d", len(replies), n)
	}
	for i, r := range replies {
		if string(r.GetPayload()) != payload(i) || int(r.GetAttempt()) != attempt || int(r.GetSequence()) != i {
			t.Fatalf("echo %d = %q seq %d from attempt %d, want %q seq %d from attempt %d",
				i, r.GetPayload(), r.GetSequence(), r.GetAttempt(), payload(i), i, attempt)
		}
	}
}

// TestStreamBidiConcurrentSenderAndReceiver sends from one goroutine and
// receives on another while the first attempt (or the first two) fails
// before its first echo: the retry happens in RecvMsg while SendMsg runs,
// or in SendMsg, and no message is lost, duplicated or reordered. Run
// under -race.
func TestStreamBidiConcurrentSenderAndReceiver(t *testing.T) {
	const n = 40
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		c := streamPipeline(t, 4)
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		for round := range 12 {
			fails := int32(1 + round%2)
			id := fmt.Sprintf("r%d", round)
			ctx := ctxTimeout(t, 10*time.Second)
			st, err := e.client.BidiStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			sendErr := make(chan error, 1)
			go func() {
				b := &testingv1.Behavior{CallId: id, FailAttempts: fails}
				for i := range n {
					if err := st.Send(&testingv1.BidiStreamRequest{Behavior: b, Payload: []byte(payload(i))}); err != nil {
						sendErr <- fmt.Errorf("send %d: %w", i, err)
						return
					}
				}
				sendErr <- st.CloseSend()
			}()
			replies, err := recvAll(st.Recv)
			if serr := <-sendErr; serr != nil {
				t.Fatalf("round %d: %v", round, serr)
			}
			if err != nil {
				t.Fatalf("round %d: stream failed: %v", round, err)
			}
			checkBidiEchoes(t, replies, n, int(fails)+1)
			if got := e.svc.Attempts(id); got != int(fails)+1 {
				t.Errorf("round %d: server saw %d attempts, want %d", round, got, fails+1)
			}
		}
		for i, a := range e.log.attempts() {
			// Every attempt reads a prefix of the messages, in order,
			// each once; the ones that succeed read all of them.
			for j, p := range a.payloads {
				if p != payload(j) {
					t.Fatalf("server attempt %d read %q", i, a.payloads)
				}
			}
		}
	})
}

// TestStreamSendDrivesRetry: nobody receives while the first attempt of a
// bidi stream fails, so the send that finds it over fetches its status
// and retries at once; the application then receives every echo from
// attempt 2, none from attempt 1.
func TestStreamSendDrivesRetry(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		c := streamPipeline(t, 3)
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		st, err := e.client.BidiStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Attempt 1 echoes p0, then fails when it reads p1.
		b := &testingv1.Behavior{CallId: "d", FailAttempts: 1, FailAfterMessages: 1}
		sent := 0
		// Send until attempt 2 has begun: only a send can have started it.
		// Sends do not block (the buffer holds them), and the client
		// learns of the failure after a few round trips.
		for e.svc.Attempts("d") < 2 {
			if sent == 10000 {
				t.Fatal("no retry after 10000 sends")
			}
			if err := st.Send(&testingv1.BidiStreamRequest{Behavior: b, Payload: []byte(payload(sent))}); err != nil {
				t.Fatalf("send %d: %v", sent, err)
			}
			sent++
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		replies, err := recvAll(st.Recv)
		if err != nil {
			t.Fatalf("stream failed: %v", err)
		}
		checkBidiEchoes(t, replies, sent, 2)
	})
}

// TestStreamDrainedFinalOutcome: when a send finds an attempt over whose
// error is not retried, SendMsg returns io.EOF and RecvMsg delivers the
// messages the attempt had sent (one echo, or none), then its status.
func TestStreamDrainedFinalOutcome(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		for _, echoes := range []int{1, 0} {
			drainedFinal(t, topts, echoes)
		}
	})
}

func drainedFinal(t *testing.T, topts []testservice.Option, echoes int) {
	t.Helper()
	{
		c := streamPipeline(t, 3)
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		st, err := e.client.BidiStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b := &testingv1.Behavior{CallId: "f", FailAttempts: -1, FailAfterMessages: int32(echoes), FailCode: uint32(codes.Internal)}
		var sendErr error
		for i := 0; sendErr == nil; i++ {
			if i == 10000 {
				t.Fatal("SendMsg never returned io.EOF")
			}
			sendErr = st.Send(&testingv1.BidiStreamRequest{Behavior: b, Payload: []byte(payload(i))})
		}
		if !errors.Is(sendErr, io.EOF) {
			t.Fatalf("send error %v, want io.EOF", sendErr)
		}
		replies, err := recvAll(st.Recv)
		if status.Code(err) != codes.Internal {
			t.Errorf("stream error %v, want INTERNAL", err)
		}
		checkBidiEchoes(t, replies, echoes, 1)
		if got := e.svc.Attempts("f"); got != 1 {
			t.Errorf("server saw %d attempts, want 1", got)
		}
		if md, err := st.Header(); err != nil || md == nil && echoes > 0 {
			t.Errorf("Header after the end = %v, %v", md, err)
		}
	}
}

// TestStreamHeaderDrivesRetry: Header called first, before any RecvMsg,
// retries a first attempt that ended without headers and returns the
// headers of attempt 2, which commits the stream.
func TestStreamHeaderDrivesRetry(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		c := streamPipeline(t, 3)
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		b := &testingv1.Behavior{CallId: "h", FailAttempts: 1, StreamMessages: 2}
		st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: b, Payload: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		md, err := st.Header()
		if err != nil || md == nil {
			t.Fatalf("Header = %v, %v; want attempt 2's headers", md, err)
		}
		replies, err := recvAll(st.Recv)
		if err != nil {
			t.Fatal(err)
		}
		checkReplies(t, replies, 2, 2, func(int) string { return "x" })
	})
}

// TestStreamBufferOverflowCommits: once the messages sent exceed
// StreamBufferLimit the stream is committed, so the server's later failure
// (after it read all three) reaches the application and no attempt
// follows.
func TestStreamBufferOverflowCommits(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		r := fastRetry(3)
		r.StreamBufferLimit = 40
		c := newPipeline(t, interceptors.Policy{Retry: r})
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		st, err := e.client.ClientStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b := &testingv1.Behavior{CallId: "o", FailAttempts: 1, FailAfterMessages: 3}
		for i := range 3 {
			// Each message is about 20 bytes: the third overflows 40.
			err := st.Send(&testingv1.ClientStreamRequest{Behavior: b, Payload: []byte(fmt.Sprintf("payload-%d", i))})
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		_, err = st.CloseAndRecv()
		if status.Code(err) != codes.Unavailable {
			t.Errorf("err = %v, want the server's UNAVAILABLE", err)
		}
		if got := e.svc.Attempts("o"); got != 1 {
			t.Errorf("server saw %d attempts, want 1", got)
		}

		// The same stream under the default 256 KiB limit is retried.
		c2 := newPipeline(t, interceptors.Policy{Retry: fastRetry(3)})
		e2 := newStreamEnv(t, topts, c2.StreamClientInterceptor())
		st, err = e2.client.ClientStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b.CallId = "o2"
		for i := range 3 {
			if err := st.Send(&testingv1.ClientStreamRequest{Behavior: b, Payload: []byte(fmt.Sprintf("payload-%d", i))}); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		if resp, err := st.CloseAndRecv(); err != nil || len(resp.GetPayloads()) != 3 {
			t.Errorf("default limit: %v, %v; want 3 payloads", resp, err)
		}
	})
}

// timeObserver records when each attempt started and signals CallEnd.
type timeObserver struct {
	mu     sync.Mutex
	starts []time.Time
	ended  chan error
}

func (o *timeObserver) observer() interceptors.Observer {
	return interceptors.Observer{
		OnAttemptStart: func(ctx context.Context, _ interceptors.AttemptInfo) context.Context {
			o.mu.Lock()
			o.starts = append(o.starts, time.Now())
			o.mu.Unlock()
			return ctx
		},
		OnCallEnd: func(_ context.Context, _ interceptors.CallInfo, err error) { o.ended <- err },
	}
}

// TestStreamDeadlineBoundsRetries: the caller's deadline bounds every
// attempt and wait of a stream: with a server that always fails and short
// waits, attempts start only before the deadline and the stream ends near
// it; with a wait longer than the time left, it ends at once.
func TestStreamDeadlineBoundsRetries(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		obs := &timeObserver{ended: make(chan error, 4)}
		c := newClient(t, interceptors.Config{Default: interceptors.Policy{Retry: &interceptors.RetryPolicy{
			MaxAttempts: 1000, Backoff: constant(20 * time.Millisecond), Jitter: interceptors.JitterNone, Budget: interceptors.NoBudget,
		}}, Observer: obs.observer()})
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		const budget = 300 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), budget)
		defer cancel()
		deadline, _ := ctx.Deadline()
		b := &testingv1.Behavior{CallId: "dl", FailAttempts: -1, StreamMessages: 1}
		st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: b})
		if err == nil {
			_, err = recvAll(st.Recv)
		}
		ended := time.Now()
		if c := status.Code(err); c != codes.DeadlineExceeded && c != codes.Unavailable {
			t.Errorf("err = %v, want DEADLINE_EXCEEDED or the last UNAVAILABLE", err)
		}
		waitFor(t, obs.ended, 5*time.Second, "CallEnd")
		obs.mu.Lock()
		starts := slices.Clone(obs.starts)
		obs.mu.Unlock()
		if len(starts) < 2 {
			t.Errorf("%d attempts, want retries within %v", len(starts), budget)
		}
		// The pipeline checks the deadline just before it asks for a
		// breaker permit and calls AttemptStart; the slack only covers a
		// goroutine paused between the two on a loaded machine.
		const slack = 50 * time.Millisecond
		for i, s := range starts {
			if s.After(deadline.Add(slack)) {
				t.Errorf("attempt %d started %v after the deadline", i+1, s.Sub(deadline))
			}
		}
		// The last attempt may start just before the deadline and reach
		// the server just after it, which then does not run it.
		if got := e.svc.Attempts("dl"); got > len(starts) || got < len(starts)-1 {
			t.Errorf("server saw %d attempts, observer %d", got, len(starts))
		}
		if late := ended.Sub(deadline); late > 2*time.Second {
			t.Errorf("stream ended %v after its deadline", late)
		}

		// A wait that cannot fit is not made: one attempt, the server's
		// error at once.
		slow := newPipeline(t, interceptors.Policy{Retry: &interceptors.RetryPolicy{
			MaxAttempts: 3, Backoff: constant(time.Hour), Jitter: interceptors.JitterNone, Budget: interceptors.NoBudget,
		}})
		e2 := newStreamEnv(t, topts, slow.StreamClientInterceptor())
		ctx2 := ctxTimeout(t, time.Minute)
		st, err = e2.client.ServerStream(ctx2, &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "late", FailAttempts: -1}})
		if err == nil {
			_, err = recvAll(st.Recv)
		}
		if status.Code(err) != codes.Unavailable || ctx2.Err() != nil {
			t.Errorf("err = %v (ctx %v), want UNAVAILABLE before the deadline", err, ctx2.Err())
		}
		if got := e2.svc.Attempts("late"); got != 1 {
			t.Errorf("server saw %d attempts, want 1", got)
		}
	})
}

// TestStreamBreaker: an open circuit rejects a stream with UNAVAILABLE
// matching ErrCircuitOpen without reaching the server; a stream the caller
// cancels counts for nothing, also when the caller never reads again.
func TestStreamBreaker(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		c := newPipeline(t, interceptors.Policy{Breaker: &interceptors.BreakerPolicy{FailureThreshold: 2, OpenDuration: time.Hour}})
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		method := testingv1.TestService_ServerStream_FullMethodName
		ctx := ctxTimeout(t, 10*time.Second)

		// A cancelled stream, read to its end.
		cctx, cancel := context.WithCancel(ctx)
		st, err := e.client.ServerStream(cctx, &testingv1.ServerStreamRequest{Behavior: testservice.Sleeping("cancel", time.Minute, 0)})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.svc.WaitAttempts(ctx, "cancel", 1); err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := recvAll(st.Recv); status.Code(err) != codes.Canceled {
			t.Errorf("cancelled stream: %v, want CANCELLED", err)
		}
		m := c.Breaker(e.srv.Target(), method).Metrics()
		if m.Ignored != 1 || m.Failures != 0 {
			t.Errorf("after a cancelled stream: %d ignored, %d failures; want 1, 0", m.Ignored, m.Failures)
		}

		// Two failing streams open the circuit.
		for i := range 2 {
			st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: testservice.Failing("fail", -1, codes.Internal)})
			if err == nil {
				_, err = recvAll(st.Recv)
			}
			if status.Code(err) != codes.Internal {
				t.Fatalf("stream %d: %v, want INTERNAL", i, err)
			}
		}
		if s := c.Breaker(e.srv.Target(), method).State(); s != breaker.Open {
			t.Fatalf("breaker %v, want open", s)
		}
		before := e.svc.TotalAttempts()
		_, err = e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: testservice.Failing("rejected", 0, codes.OK)})
		checkOpen(t, err)
		if got := e.svc.TotalAttempts(); got != before {
			t.Errorf("server saw %d attempts while the circuit was open", got-before)
		}
	})
}

// TestStreamCancelWithoutReading: a caller that cancels a stream and never
// reads it again still releases its breaker permit (ignored), its
// bulkhead slot and its telemetry.
func TestStreamCancelWithoutReading(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		obs := &timeObserver{ended: make(chan error, 1)}
		c := newClient(t, interceptors.Config{Default: interceptors.Policy{
			Breaker:  &interceptors.BreakerPolicy{},
			Bulkhead: &interceptors.BulkheadPolicy{Limit: 1},
		}, Observer: obs.observer()})
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		cctx, cancel := context.WithCancel(ctx)
		if _, err := e.client.ServerStream(cctx, &testingv1.ServerStreamRequest{Behavior: testservice.Sleeping("walk", time.Minute, 0)}); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.WaitAttempts(ctx, "walk", 1); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := waitFor(t, obs.ended, 5*time.Second, "CallEnd"); status.Code(err) != codes.Canceled {
			t.Errorf("CallEnd error %v, want CANCELLED", err)
		}
		m := c.Breaker(e.srv.Target(), testingv1.TestService_ServerStream_FullMethodName).Metrics()
		if m.Ignored != 1 || m.Calls != 1 {
			t.Errorf("breaker: %d ignored of %d calls, want 1 of 1", m.Ignored, m.Calls)
		}
		// The slot is free again.
		st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "next", StreamMessages: 1}})
		if err != nil {
			t.Fatalf("next stream: %v", err)
		}
		if _, err := recvAll(st.Recv); err != nil {
			t.Fatalf("next stream: %v", err)
		}
		waitFor(t, obs.ended, 5*time.Second, "CallEnd")
	})
}

// TestStreamBulkhead: a stream holds its bulkhead slot until it ends; a
// stream that finds none fails with RESOURCE_EXHAUSTED matching
// ErrBulkheadFull, without reaching the server.
func TestStreamBulkhead(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		c := newPipeline(t, interceptors.Policy{Retry: fastRetry(3), Bulkhead: &interceptors.BulkheadPolicy{Limit: 1, Scope: interceptors.ScopeTarget}})
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		// The first stream is retried once and stays open: one slot for
		// both attempts.
		first, err := e.client.BidiStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b := &testingv1.Behavior{CallId: "hold", FailAttempts: 1}
		if err := first.Send(&testingv1.BidiStreamRequest{Behavior: b, Payload: []byte(payload(0))}); err != nil {
			t.Fatal(err)
		}
		if r, err := first.Recv(); err != nil || r.GetReply().GetAttempt() != 2 {
			t.Fatalf("first echo %v, %v; want one from attempt 2", r, err)
		}
		_, err = e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "second"}})
		if status.Code(err) != codes.ResourceExhausted || !errors.Is(err, resilience.ErrBulkheadFull) {
			t.Errorf("second stream: %v, want RESOURCE_EXHAUSTED matching ErrBulkheadFull", err)
		}
		if got := e.svc.Attempts("second"); got != 0 {
			t.Errorf("server saw %d attempts of the rejected stream", got)
		}
		if err := first.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := recvAll(first.Recv); err != nil {
			t.Fatal(err)
		}
		st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "third", StreamMessages: 1}})
		if err != nil {
			t.Fatalf("third stream: %v", err)
		}
		if _, err := recvAll(st.Recv); err != nil {
			t.Fatalf("third stream: %v", err)
		}
	})
}

// TestStreamObserver: a retried stream gets one call, one start and end
// per attempt and a retry event, as a unary call does.
func TestStreamObserver(t *testing.T) {
	rec := &recorder{}
	c := newClient(t, interceptors.Config{Default: interceptors.Policy{Retry: fastRetry(3)}, Observer: rec.observer()})
	e := newStreamEnv(t, nil, c.StreamClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "o", FailAttempts: 1, StreamMessages: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := recvAll(st.Recv); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.calls) != 1 || !rec.calls[0].ServerStreams || rec.calls[0].ClientStreams || rec.calls[0].Pattern != interceptors.PatternRetry {
		t.Errorf("CallStart %+v, want one server-streaming retried call", rec.calls)
	}
	if len(rec.ends) != 1 || rec.ends[0].Attempts != 2 || rec.endErrs[0] != nil {
		t.Errorf("CallEnd %+v %v, want one with 2 attempts and no error", rec.ends, rec.endErrs)
	}
	if len(rec.attempts) != 2 || len(rec.ended) != 2 || rec.attempts[1].Attempt != 2 || rec.attempts[1].Timeout != 0 {
		t.Errorf("attempts %+v ended %+v, want 2 of each without timeout", rec.attempts, rec.ended)
	}
	if len(rec.events) != 1 || rec.events[0].Kind != interceptors.EventRetry || rec.events[0].Attempt != 1 {
		t.Errorf("events %+v, want one retry after attempt 1", rec.events)
	}
}

// TestStreamSingleAttempt: hedging does not apply to streams, and neither
// do retries disabled per call: one attempt, the server's error.
func TestStreamSingleAttempt(t *testing.T) {
	hedged := newPipeline(t, interceptors.Policy{Hedging: &interceptors.HedgingPolicy{Budget: interceptors.NoBudget}, Idempotency: interceptors.AlwaysIdempotent})
	retried := newPipeline(t, interceptors.Policy{Retry: fastRetry(3)})
	for _, tc := range []struct {
		name string
		c    *interceptors.Client
		opts []grpc.CallOption
	}{
		{"hedging", hedged, nil},
		{"disabled", retried, []grpc.CallOption{interceptors.DisableRetry()}},
		{"one-attempt", retried, []grpc.CallOption{interceptors.WithMaxAttempts(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newStreamEnv(t, nil, tc.c.StreamClientInterceptor())
			ctx := ctxTimeout(t, 10*time.Second)
			st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "one", FailAttempts: 1, StreamMessages: 1}}, tc.opts...)
			if err == nil {
				_, err = recvAll(st.Recv)
			}
			if status.Code(err) != codes.Unavailable {
				t.Errorf("err %v, want UNAVAILABLE", err)
			}
			if got := e.svc.Attempts("one"); got != 1 {
				t.Errorf("server saw %d attempts, want 1", got)
			}
		})
	}
}

// TestStreamPushback: a server's veto stops the retries of a stream, and
// its delay makes RESOURCE_EXHAUSTED retryable.
func TestStreamPushback(t *testing.T) {
	c := streamPipeline(t, 3)
	e := newStreamEnv(t, nil, c.StreamClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	veto := &testingv1.Behavior{CallId: "veto", FailAttempts: 1, PushbackMs: "-1", StreamMessages: 1}
	st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: veto})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := recvAll(st.Recv); status.Code(err) != codes.Unavailable || e.svc.Attempts("veto") != 1 {
		t.Errorf("veto: %v after %d attempts, want UNAVAILABLE after 1", err, e.svc.Attempts("veto"))
	}
	delay := &testingv1.Behavior{CallId: "delay", FailAttempts: 1, FailCode: uint32(codes.ResourceExhausted), PushbackMs: "5", StreamMessages: 1}
	st, err = e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: delay})
	if err != nil {
		t.Fatal(err)
	}
	if replies, err := recvAll(st.Recv); err != nil || len(replies) != 1 || replies[0].GetAttempt() != 2 {
		t.Errorf("pushback delay: %v, %v; want one message from attempt 2", replies, err)
	}
}

// TestStreamDefaultTimeout: a stream without a deadline gets the default
// timeout for its whole life; running out of it is DEADLINE_EXCEEDED
// matching *resilience.TimeoutError.
func TestStreamDefaultTimeout(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		c := newPipeline(t, interceptors.Policy{DefaultTimeout: 100 * time.Millisecond})
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		st, err := e.client.ServerStream(context.Background(), &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{
			CallId: "t", Sleep: durationpb.New(time.Minute), StreamMessages: 1}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = recvAll(st.Recv)
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("err %v, want DEADLINE_EXCEEDED", err)
		}
		if te, ok := errors.AsType[*resilience.TimeoutError](err); !ok || te.After != 100*time.Millisecond {
			t.Errorf("err %v does not match *TimeoutError{100ms}", err)
		}
	})
}

// TestStreamSendAfterCloseSend: as in gRPC, a message sent after CloseSend
// is refused with INTERNAL, and is not replayed.
func TestStreamSendAfterCloseSend(t *testing.T) {
	c := streamPipeline(t, 3)
	e := newStreamEnv(t, nil, c.StreamClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	st, err := e.client.ClientStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := &testingv1.ClientStreamRequest{Behavior: &testingv1.Behavior{CallId: "cs"}, Payload: []byte("a")}
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := st.Send(req); status.Code(err) != codes.Internal {
		t.Errorf("send after CloseSend: %v, want INTERNAL", err)
	}
	var resp testingv1.ClientStreamResponse
	if err := st.RecvMsg(&resp); err != nil || len(resp.GetPayloads()) != 1 {
		t.Errorf("response %v, %v; want one payload", &resp, err)
	}
}

// TestStreamClientOnePatternEach: Clients of one pattern each, chained,
// compose as one pipeline does, and a negative StreamBufferLimit is
// refused with a FieldError naming it.
func TestStreamClientOnePatternEach(t *testing.T) {
	var ints []grpc.StreamClientInterceptor
	for _, p := range []interceptors.Policy{
		{DefaultTimeout: time.Minute},
		{Retry: fastRetry(3)},
		{Breaker: &interceptors.BreakerPolicy{}},
		{Bulkhead: &interceptors.BulkheadPolicy{Limit: 4}},
	} {
		ints = append(ints, newPipeline(t, p).StreamClientInterceptor())
	}
	e := newStreamEnv(t, nil, ints...)
	st, err := e.client.ServerStream(context.Background(), &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "i", FailAttempts: 2, StreamMessages: 3}})
	if err != nil {
		t.Fatal(err)
	}
	replies, err := recvAll(st.Recv)
	if err != nil {
		t.Fatal(err)
	}
	checkReplies(t, replies, 3, 3, func(int) string { return "" })
	_, err = interceptors.NewClient(interceptors.Config{Default: interceptors.Policy{Retry: &interceptors.RetryPolicy{StreamBufferLimit: -1}}})
	if fes := resilience.FieldErrors(err); len(fes) != 1 || fes[0].Field != "Default.Retry.StreamBufferLimit" || fes[0].Value != -1 {
		t.Errorf("negative StreamBufferLimit: %v, want one FieldError naming Default.Retry.StreamBufferLimit with -1", err)
	}
}

// constant is a constant backoff of d.
func constant(d time.Duration) interceptors.Backoff {
	return interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: d}
}

// TestStreamUnregisteredMethod: a method whose response type is not in
// protoregistry cannot be drained by a send, so the send only buffers and
// the next RecvMsg finds the failure and retries; the result is the same.
func TestStreamUnregisteredMethod(t *testing.T) {
	const n = 300
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		c := streamPipeline(t, 3)
		svc := testservice.NewService()
		desc := testingv1.TestService_ServiceDesc
		desc.ServiceName = "unregistered.v1.Echo"
		topts = append(slices.Clone(topts), testservice.WithService(svc), testservice.WithRegister(func(g *grpc.Server) { g.RegisterService(&desc, svc) }))
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		conn := e.srv.DialTB(t, grpc.WithDisableRetry(), grpc.WithChainStreamInterceptor(c.StreamClientInterceptor()))
		ctx := ctxTimeout(t, 10*time.Second)
		st, err := conn.NewStream(ctx, &desc.Streams[2], "/unregistered.v1.Echo/BidiStream")
		if err != nil {
			t.Fatal(err)
		}
		b := &testingv1.Behavior{CallId: "u", FailAttempts: 1, FailAfterMessages: 0}
		for i := range n {
			if err := st.SendMsg(&testingv1.BidiStreamRequest{Behavior: b, Payload: []byte(payload(i))}); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		replies, err := recvAll(func() (*testingv1.BidiStreamResponse, error) {
			m := new(testingv1.BidiStreamResponse)
			return m, st.RecvMsg(m)
		})
		if err != nil {
			t.Fatalf("stream failed: %v", err)
		}
		checkBidiEchoes(t, replies, n, 2)
		if st.Context() == nil || st.Trailer() == nil {
			t.Errorf("Context %v, Trailer %v after the end; want both", st.Context(), st.Trailer())
		}
	})
}

type ctxKey struct{}

// TestStreamContextOutlivesAttempts: the context a caller takes from a
// stream before it commits is the stream's, not its first attempt's: it
// stays alive while a retry replaces the attempt, carries the caller's
// values and the peer of the attempt in use, does not stop the stream
// from being retried, and ends when the stream ends.
func TestStreamContextOutlivesAttempts(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		c := streamPipeline(t, 3)
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		ctx := context.WithValue(ctxTimeout(t, 10*time.Second), ctxKey{}, "v")
		b := &testingv1.Behavior{CallId: "ctx", FailAttempts: 1, StreamMessages: 2}
		st, err := e.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: b, Payload: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		sctx := st.Context() // before the stream commits
		first, err := st.Recv()
		if err != nil || first.GetReply().GetAttempt() != 2 {
			t.Fatalf("first message %v, %v; want one from attempt 2", first, err)
		}
		if err := sctx.Err(); err != nil {
			t.Errorf("stream context ended (%v) while the stream goes on", err)
		}
		if sctx.Value(ctxKey{}) != "v" {
			t.Errorf("stream context lost the caller's value")
		}
		if p, ok := peer.FromContext(sctx); !ok || p.Addr == nil {
			t.Errorf("stream context has no peer: %v, %v", p, ok)
		}
		replies, err := recvAll(st.Recv)
		if err != nil || len(replies) != 1 {
			t.Fatalf("rest of the stream: %v, %v; want one more message", replies, err)
		}
		if sctx.Err() == nil {
			t.Error("stream context still alive after the stream ended")
		}
		if got := e.svc.Attempts("ctx"); got != 2 {
			t.Errorf("server saw %d attempts, want 2", got)
		}
	})
}

// TestStreamContextEndsWithCaller: the stream's context, taken before
// anything was received, ends when the caller cancels the stream, without
// the application reading again.
func TestStreamContextEndsWithCaller(t *testing.T) {
	c := streamPipeline(t, 3)
	e := newStreamEnv(t, nil, c.StreamClientInterceptor())
	ctx := ctxTimeout(t, 10*time.Second)
	cctx, cancel := context.WithCancel(ctx)
	st, err := e.client.ServerStream(cctx, &testingv1.ServerStreamRequest{Behavior: testservice.Sleeping("cc", time.Minute, 0)})
	if err != nil {
		t.Fatal(err)
	}
	sctx := st.Context()
	if err := e.svc.WaitAttempts(ctx, "cc", 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-sctx.Done():
	case <-ctx.Done():
		t.Fatal("stream context not done after the caller cancelled")
	}
	if _, err := st.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("Recv after cancel: %v, want CANCELLED", err)
	}
}

// TestStreamRetryWaitHoldsSends: once the retry engine (and its budget)
// has allowed a retry, that attempt is made: a send during the wait, whose
// message would overflow the replay buffer, waits for the new attempt,
// goes out on it after the replay, and only then commits the stream.
func TestStreamRetryWaitHoldsSends(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		retried := make(chan struct{}, 1)
		r := fastRetry(3)
		r.Backoff = constant(200 * time.Millisecond)
		b := &testingv1.Behavior{CallId: "w", FailAttempts: 1, FailAfterMessages: 0}
		first := &testingv1.BidiStreamRequest{Behavior: b, Payload: []byte(payload(0))}
		r.StreamBufferLimit = proto.Size(first) // the first message fills it
		c := newClient(t, interceptors.Config{Default: interceptors.Policy{Retry: r}, Observer: interceptors.Observer{
			OnEvent: func(_ context.Context, e interceptors.Event) {
				if e.Kind == interceptors.EventRetry {
					retried <- struct{}{}
				}
			},
		}})
		e := newStreamEnv(t, topts, c.StreamClientInterceptor())
		ctx := ctxTimeout(t, 10*time.Second)
		st, err := e.client.BidiStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(first); err != nil {
			t.Fatal(err)
		}
		type result struct {
			replies []*testingv1.Reply
			err     error
		}
		done := make(chan result, 1)
		go func() {
			replies, err := recvAll(st.Recv)
			done <- result{replies, err}
		}()
		waitFor(t, retried, 5*time.Second, "the retry of attempt 1")
		// This message overflows the buffer.
		if err := st.Send(&testingv1.BidiStreamRequest{Behavior: b, Payload: []byte(payload(1))}); err != nil {
			t.Fatalf("send during the wait: %v", err)
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		res := waitFor(t, done, 5*time.Second, "the end of the stream")
		if res.err != nil {
			t.Fatalf("stream failed: %v", res.err)
		}
		checkBidiEchoes(t, res.replies, 2, 2)
		if got := e.svc.Attempts("w"); got != 2 {
			t.Errorf("server saw %d attempts, want 2", got)
		}
	})
}

// callbackObserver is an Observer whose every hook calls back into the
// stream in use (Trailer, Context) and into the client (Breaker), as a
// hook may: the pipeline runs none of them under a lock of its own.
type callbackObserver struct {
	c      *interceptors.Client
	target string
	method string
	stream atomic.Pointer[grpc.ClientStream]
	ended  chan error
	events chan interceptors.Event
}

func (o *callbackObserver) callBack() {
	if p := o.stream.Load(); p != nil {
		_ = (*p).Trailer()
		_ = (*p).Context().Err()
	}
	if o.c != nil {
		if b := o.c.Breaker(o.target, o.method); b != nil {
			_ = b.State()
		}
	}
}

func (o *callbackObserver) observer() interceptors.Observer {
	return interceptors.Observer{
		OnCallStart: func(ctx context.Context, _ interceptors.CallInfo) context.Context {
			o.callBack()
			return ctx
		},
		OnCallEnd: func(_ context.Context, _ interceptors.CallInfo, err error) {
			o.callBack()
			o.ended <- err
		},
		OnAttemptStart: func(ctx context.Context, _ interceptors.AttemptInfo) context.Context {
			o.callBack()
			return ctx
		},
		OnAttemptEnd: func(context.Context, interceptors.AttemptInfo, error) { o.callBack() },
		OnEvent: func(_ context.Context, e interceptors.Event) {
			o.callBack()
			select {
			case o.events <- e:
			default:
			}
		},
	}
}

// TestStreamHooksCallBack: the observer's hooks run without the stream's
// lock, so a hook may call back into the stream and the client while the
// stream retries, is rejected by the rate limit, ends, or is cancelled;
// and a retry that waits for a rate-limit permit does not hold the
// stream's other methods meanwhile.
func TestStreamHooksCallBack(t *testing.T) {
	const deadlock = 10 * time.Second
	method := testingv1.TestService_BidiStream_FullMethodName
	setup := func(t *testing.T, p interceptors.Policy) (*callbackObserver, *streamEnv) {
		o := &callbackObserver{method: method, ended: make(chan error, 1), events: make(chan interceptors.Event, 16)}
		o.c = newClient(t, interceptors.Config{Default: p, Observer: o.observer()})
		e := newStreamEnv(t, nil, o.c.StreamClientInterceptor())
		o.target = e.srv.Target()
		return o, e
	}
	// run runs fn on a goroutine and fails the test when it does not
	// return in time: a hook that deadlocks would hang it.
	run := func(t *testing.T, what string, fn func() error) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- fn() }()
		return waitFor(t, done, deadlock, what)
	}
	open := func(t *testing.T, o *callbackObserver, e *streamEnv, ctx context.Context) testingv1.TestService_BidiStreamClient {
		t.Helper()
		st, err := e.client.BidiStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var cs grpc.ClientStream = st
		o.stream.Store(&cs)
		return st
	}

	t.Run("retry", func(t *testing.T) {
		o, e := setup(t, interceptors.Policy{Retry: fastRetry(3), Breaker: &interceptors.BreakerPolicy{FailureThreshold: 100}})
		ctx := ctxTimeout(t, time.Minute)
		st := open(t, o, e, ctx)
		var replies []*testingv1.Reply
		err := run(t, "the retried stream", func() error {
			b := &testingv1.Behavior{CallId: "cb", FailAttempts: 1, FailAfterMessages: 0}
			for i := range 3 {
				if err := st.Send(&testingv1.BidiStreamRequest{Behavior: b, Payload: []byte(payload(i))}); err != nil {
					return err
				}
			}
			if err := st.CloseSend(); err != nil {
				return err
			}
			var err error
			replies, err = recvAll(st.Recv)
			return err
		})
		if err != nil {
			t.Fatalf("stream failed: %v", err)
		}
		checkBidiEchoes(t, replies, 3, 2)
		if err := waitFor(t, o.ended, deadlock, "CallEnd"); err != nil {
			t.Errorf("CallEnd error %v, want nil", err)
		}
	})

	t.Run("rejected", func(t *testing.T) {
		// The first attempt takes the one permit; the retry is refused.
		o, e := setup(t, interceptors.Policy{Retry: fastRetry(3), RateLimit: &interceptors.RateLimitPolicy{Rate: 0.001, Burst: 1}})
		ctx := ctxTimeout(t, time.Minute)
		st := open(t, o, e, ctx)
		err := run(t, "the rate-limited stream", func() error {
			b := &testingv1.Behavior{CallId: "rl", FailAttempts: 1, FailAfterMessages: 0}
			if err := st.Send(&testingv1.BidiStreamRequest{Behavior: b, Payload: []byte(payload(0))}); err != nil {
				return err
			}
			_, err := recvAll(st.Recv)
			return err
		})
		if status.Code(err) != codes.ResourceExhausted || !errors.Is(err, resilience.ErrRateLimited) {
			t.Errorf("err = %v, want RESOURCE_EXHAUSTED matching ErrRateLimited", err)
		}
		waitFor(t, o.ended, deadlock, "CallEnd")
	})

	t.Run("cancelled", func(t *testing.T) {
		o, e := setup(t, interceptors.Policy{Retry: fastRetry(3), Breaker: &interceptors.BreakerPolicy{}})
		ctx := ctxTimeout(t, time.Minute)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st := open(t, o, e, cctx)
		if err := st.Send(&testingv1.BidiStreamRequest{Behavior: testservice.Sleeping("cbc", time.Minute, 0)}); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.WaitAttempts(ctx, "cbc", 1); err != nil {
			t.Fatal(err)
		}
		cancel()
		// The stream ends on the context's goroutine, whose OnCallEnd
		// calls back into the stream.
		if err := waitFor(t, o.ended, deadlock, "CallEnd"); status.Code(err) != codes.Canceled {
			t.Errorf("CallEnd error %v, want CANCELLED", err)
		}
		err := run(t, "Recv after cancel", func() error {
			_, err := st.Recv()
			return err
		})
		if status.Code(err) != codes.Canceled {
			t.Errorf("Recv after cancel: %v, want CANCELLED", err)
		}
	})

	t.Run("cancelled-while-opening", func(t *testing.T) {
		// OnAttemptStart of the retry cancels the stream and waits for
		// its end, which the context's goroutine reports meanwhile: the
		// retry's attempt then ends once, ignored by the breaker, before
		// Recv reports the end.
		var (
			mu           sync.Mutex
			starts, ends int
			late         bool
		)
		ended := make(chan struct{})
		ctx := ctxTimeout(t, time.Minute)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		c := newClient(t, interceptors.Config{
			Default: interceptors.Policy{Retry: fastRetry(3), Breaker: &interceptors.BreakerPolicy{FailureThreshold: 100}},
			Observer: interceptors.Observer{
				OnAttemptStart: func(ctx context.Context, info interceptors.AttemptInfo) context.Context {
					mu.Lock()
					starts++
					mu.Unlock()
					if info.Attempt == 2 {
						cancel()
						select {
						case <-ended:
						case <-time.After(deadlock):
							mu.Lock()
							late = true
							mu.Unlock()
						}
					}
					return ctx
				},
				OnAttemptEnd: func(context.Context, interceptors.AttemptInfo, error) {
					mu.Lock()
					ends++
					mu.Unlock()
				},
				OnCallEnd: func(context.Context, interceptors.CallInfo, error) { close(ended) },
			},
		})
		e := newStreamEnv(t, nil, c.StreamClientInterceptor())
		st, err := e.client.ServerStream(cctx, &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "cwo", FailAttempts: -1}})
		if err == nil {
			err = run(t, "the cancelled stream", func() error {
				_, err := recvAll(st.Recv)
				return err
			})
		}
		if status.Code(err) != codes.Canceled {
			t.Errorf("err = %v, want CANCELLED", err)
		}
		mu.Lock()
		if late {
			t.Error("the stream did not end while OnAttemptStart ran")
		}
		if starts != 2 || ends != 2 {
			t.Errorf("%d attempts started, %d ended; want 2 and 2", starts, ends)
		}
		mu.Unlock()
		m := c.Breaker(e.srv.Target(), testingv1.TestService_ServerStream_FullMethodName).Metrics()
		if m.Failures != 1 || m.Ignored != 1 {
			t.Errorf("breaker: %d failures, %d ignored; want 1 and 1", m.Failures, m.Ignored)
		}
	})

	t.Run("rate-wait", func(t *testing.T) {
		// The retry waits about 2s for its permit; Trailer and CloseSend,
		// which take the stream's lock, return meanwhile.
		o, e := setup(t, interceptors.Policy{Retry: fastRetry(3), RateLimit: &interceptors.RateLimitPolicy{Rate: 0.5, Burst: 1, Wait: true}})
		ctx := ctxTimeout(t, time.Minute)
		st := open(t, o, e, ctx)
		b := &testingv1.Behavior{CallId: "rw", FailAttempts: 1, FailAfterMessages: 0}
		if err := st.Send(&testingv1.BidiStreamRequest{Behavior: b, Payload: []byte(payload(0))}); err != nil {
			t.Fatal(err)
		}
		type result struct {
			replies []*testingv1.Reply
			err     error
		}
		done := make(chan result, 1)
		go func() {
			replies, err := recvAll(st.Recv)
			done <- result{replies, err}
		}()
		for waitFor(t, o.events, deadlock, "the retry").Kind != interceptors.EventRetry {
		}
		start := time.Now()
		if err := run(t, "Trailer during the wait for a permit", func() error {
			_ = st.Trailer()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Trailer took %v while the retry waited for a permit", d)
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		res := waitFor(t, done, deadlock, "the end of the stream")
		if res.err != nil {
			t.Fatalf("stream failed: %v", res.err)
		}
		checkBidiEchoes(t, res.replies, 1, 2)
		waitFor(t, o.ended, deadlock, "CallEnd")
	})
}

// sendHookStream calls after once its SendMsg has sent, before it returns.
type sendHookStream struct {
	grpc.ClientStream
	after func()
}

func (s *sendHookStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	s.after()
	return err
}

// TestStreamCancelledDuringServerStreamSend: a server stream whose caller
// cancels it before or while its one request is sent ends with CANCELLED
// from Recv, as with gRPC alone: the generated code returns SendMsg's error
// as the call's, so SendMsg must not return io.EOF there, which the
// application would take for a call that ended well (gRPC returns nil).
func TestStreamCancelledDuringServerStreamSend(t *testing.T) {
	const deadlock = 10 * time.Second
	for _, when := range []string{"before-send", "during-send"} {
		t.Run(when, func(t *testing.T) {
			ctx := ctxTimeout(t, time.Minute)
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ended := make(chan error, 1)
			c := newClient(t, interceptors.Config{
				Default:  interceptors.Policy{Retry: fastRetry(3), Breaker: &interceptors.BreakerPolicy{FailureThreshold: 100}},
				Observer: interceptors.Observer{OnCallEnd: func(_ context.Context, _ interceptors.CallInfo, err error) { ended <- err }},
			})
			// cancelAndWait cancels the caller's context and waits until
			// the stream has ended on the context's goroutine.
			cancelAndWait := func() {
				cancel()
				if err := waitFor(t, ended, deadlock, "CallEnd"); status.Code(err) != codes.Canceled {
					t.Errorf("CallEnd error %v, want CANCELLED", err)
				}
			}
			var outer, inner grpc.StreamClientInterceptor
			outer = func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				cs, err := streamer(ctx, desc, cc, method, opts...)
				if err == nil && when == "before-send" {
					// Between NewStream and the generated code's SendMsg.
					cancelAndWait()
				}
				return cs, err
			}
			inner = func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				cs, err := streamer(ctx, desc, cc, method, opts...)
				if err != nil || when != "during-send" {
					return cs, err
				}
				// The attempt's SendMsg has sent; the stream ends before the
				// pipeline's SendMsg looks at it again.
				return &sendHookStream{ClientStream: cs, after: cancelAndWait}, nil
			}
			e := newStreamEnv(t, nil, outer, c.StreamClientInterceptor(), inner)
			st, err := e.client.ServerStream(cctx, &testingv1.ServerStreamRequest{Behavior: testservice.Sleeping("cds-"+when, time.Minute, 0)})
			if err != nil {
				if errors.Is(err, io.EOF) {
					t.Fatalf("ServerStream: %v: the call looks successful but it was cancelled", err)
				}
				if status.Code(err) != codes.Canceled {
					t.Fatalf("ServerStream: %v, want nil or CANCELLED", err)
				}
				return
			}
			done := make(chan error, 1)
			go func() {
				_, err := recvAll(st.Recv)
				done <- err
			}()
			if err := waitFor(t, done, deadlock, "Recv"); status.Code(err) != codes.Canceled {
				t.Errorf("Recv: %v, want CANCELLED", err)
			}
		})
	}
}
