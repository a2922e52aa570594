package interceptors_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// streamPolicy sets every pattern that runs on a stream's success path.
func streamPolicy() interceptors.Policy {
	return interceptors.Policy{
		Retry:          fastRetry(3),
		Breaker:        &interceptors.BreakerPolicy{},
		Bulkhead:       &interceptors.BulkheadPolicy{Limit: 1 << 20},
		DefaultTimeout: time.Minute,
	}
}

// BenchmarkStreamSuccess measures streams whose first attempt succeeds,
// over bufconn: a server stream of 1 message and a bidi stream of 10
// echoed messages, with no interceptor ("bare") and through the pipeline
// with retry, breaker, bulkhead and default timeout (the caller having a
// deadline), with and without an observer. The difference to "bare" is the
// pipeline's cost in the same run.
func BenchmarkStreamSuccess(b *testing.B) {
	srv := testservice.StartTB(b)
	conns := []struct {
		name string
		ic   []grpc.StreamClientInterceptor
	}{
		{"bare", nil},
		{"pipeline", []grpc.StreamClientInterceptor{newPipeline(b, streamPolicy()).StreamClientInterceptor()}},
		{"pipeline+observer", []grpc.StreamClientInterceptor{newClient(b, interceptors.Config{Default: streamPolicy(), Observer: nopObserver()}).StreamClientInterceptor()}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	for _, shape := range []string{"server-stream", "bidi-10"} {
		for _, c := range conns {
			b.Run(shape+"/"+c.name, func(b *testing.B) {
				client := testingv1.NewTestServiceClient(srv.DialTB(b, grpc.WithDisableRetry(), grpc.WithChainStreamInterceptor(c.ic...)))
				run := serverStreamOnce
				if shape == "bidi-10" {
					run = bidiOnce
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := run(ctx, client); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

var benchBehavior = &testingv1.Behavior{CallId: "bench", StreamMessages: 1}

func serverStreamOnce(ctx context.Context, client testingv1.TestServiceClient) error {
	st, err := client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: benchBehavior})
	if err != nil {
		return err
	}
	for {
		if _, err := st.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func bidiOnce(ctx context.Context, client testingv1.TestServiceClient) error {
	st, err := client.BidiStream(ctx)
	if err != nil {
		return err
	}
	req := &testingv1.BidiStreamRequest{Behavior: benchBehavior, Payload: []byte("0123456789")}
	for range 10 {
		if err := st.Send(req); err != nil {
			return err
		}
		if _, err := st.Recv(); err != nil {
			return err
		}
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// memStream is an in-process grpc.ClientStream that answers at once: every
// RecvMsg fills in reply (io.EOF after left messages when left is set, the
// unbounded stream's messages otherwise), every SendMsg succeeds. It
// isolates what the stream wrapper costs from what a transport costs.
type memStream struct {
	ctx   context.Context
	reply *testingv1.Reply
	left  int // messages before io.EOF; negative: unbounded
}

func (s *memStream) Header() (metadata.MD, error) { return nil, nil }
func (s *memStream) Trailer() metadata.MD         { return nil }
func (s *memStream) CloseSend() error             { return nil }
func (s *memStream) Context() context.Context     { return s.ctx }
func (s *memStream) SendMsg(any) error            { return nil }

func (s *memStream) RecvMsg(m any) error {
	if s.left == 0 {
		return io.EOF
	}
	if s.left > 0 {
		s.left--
	}
	switch m := m.(type) {
	case *testingv1.ServerStreamResponse:
		m.Reply = s.reply
	case *testingv1.BidiStreamResponse:
		m.Reply = s.reply
	}
	return nil
}

// memStreamer returns a grpc.Streamer that opens memStreams of messages
// messages (negative: unbounded).
func memStreamer(messages int) grpc.Streamer {
	return func(ctx context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn, _ string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
		return &memStream{ctx: ctx, reply: answer, left: messages}, nil
	}
}

var (
	serverStreamDesc = &grpc.StreamDesc{StreamName: "ServerStream", ServerStreams: true}
	bidiStreamDesc   = &grpc.StreamDesc{StreamName: "BidiStream", ServerStreams: true, ClientStreams: true}
)

// streamInterceptors are the stream configurations measured in process:
// none ("bare"); no policy but an observer with the hooks a console
// subscribes (OnCallEnd and OnEvent), which has every stream wrapped
// ("observer"); the full pipeline (retry with the default budget, breaker,
// bulkhead); and the same with an observer whose every hook does nothing.
func streamInterceptors(tb testing.TB) []struct {
	name string
	ic   grpc.StreamClientInterceptor
} {
	full := interceptors.Policy{
		Retry:    &interceptors.RetryPolicy{},
		Breaker:  &interceptors.BreakerPolicy{},
		Bulkhead: &interceptors.BulkheadPolicy{Limit: 1 << 20},
	}
	return []struct {
		name string
		ic   grpc.StreamClientInterceptor
	}{
		{"bare", func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(ctx, desc, cc, method, opts...)
		}},
		{"observer", newClient(tb, interceptors.Config{Observer: interceptors.Observer{
			OnCallEnd: func(context.Context, interceptors.CallInfo, error) {},
			OnEvent:   func(context.Context, interceptors.Event) {},
		}}).StreamClientInterceptor()},
		{"pipeline", newPipeline(tb, full).StreamClientInterceptor()},
		{"pipeline+observer", newClient(tb, interceptors.Config{Default: full, Observer: nopObserver()}).StreamClientInterceptor()},
	}
}

// BenchmarkStreamWrapper measures the stream wrapper alone, over
// in-process streams that answer at once: "recv" and "bidi" are one
// message received (and, for bidi, one sent) on a committed stream, the
// per-message cost; "open" opens a server stream, receives its one
// message and its end, the per-stream cost. "bare" is the in-process
// stream without the wrapper.
func BenchmarkStreamWrapper(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	method := testingv1.TestService_ServerStream_FullMethodName
	bidi := testingv1.TestService_BidiStream_FullMethodName
	for _, c := range streamInterceptors(b) {
		b.Run("recv/"+c.name, func(b *testing.B) {
			cs, err := c.ic(ctx, serverStreamDesc, nil, method, memStreamer(-1))
			if err != nil {
				b.Fatal(err)
			}
			if err := cs.SendMsg(&testingv1.ServerStreamRequest{}); err != nil {
				b.Fatal(err)
			}
			var m testingv1.ServerStreamResponse
			b.ReportAllocs()
			for b.Loop() {
				if err := cs.RecvMsg(&m); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("bidi/"+c.name, func(b *testing.B) {
			cs, err := c.ic(ctx, bidiStreamDesc, nil, bidi, memStreamer(-1))
			if err != nil {
				b.Fatal(err)
			}
			req := &testingv1.BidiStreamRequest{}
			var m testingv1.BidiStreamResponse
			b.ReportAllocs()
			for b.Loop() {
				if err := cs.SendMsg(req); err != nil {
					b.Fatal(err)
				}
				if err := cs.RecvMsg(&m); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("open/"+c.name, func(b *testing.B) {
			req := &testingv1.ServerStreamRequest{}
			streamer := memStreamer(1)
			var m testingv1.ServerStreamResponse
			b.ReportAllocs()
			for b.Loop() {
				if err := openInProcess(ctx, c.ic, streamer, req, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// openInProcess opens a server stream through ic over streamer, sends req,
// receives one message into m and then the stream's end.
func openInProcess(ctx context.Context, ic grpc.StreamClientInterceptor, streamer grpc.Streamer, req, m any) error {
	cs, err := ic(ctx, serverStreamDesc, nil, testingv1.TestService_ServerStream_FullMethodName, streamer)
	if err != nil {
		return err
	}
	if err := cs.SendMsg(req); err != nil {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	if err := cs.RecvMsg(m); err != nil {
		return err
	}
	if err := cs.RecvMsg(m); err != io.EOF {
		return fmt.Errorf("stream end: got %v, want io.EOF", err)
	}
	return nil
}
