package console

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// benchPolicy is a policy whose patterns run on a call's success path.
func benchPolicy() interceptors.Policy {
	return interceptors.Policy{
		Retry:   &interceptors.RetryPolicy{MaxAttempts: 3},
		Breaker: &interceptors.BreakerPolicy{},
	}
}

// withConsole runs f for a client of policy without a console, then for
// one registered on a console.
func withConsole(b *testing.B, policy interceptors.Policy, f func(b *testing.B, client *interceptors.Client)) {
	for _, registered := range []bool{false, true} {
		name := "unregistered"
		if registered {
			name = "registered"
		}
		b.Run(name, func(b *testing.B) {
			client, err := interceptors.NewClient(interceptors.Config{Default: policy})
			if err != nil {
				b.Fatal(err)
			}
			if registered {
				c, err := New(Config{})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				defer c.AddClient("bench", client)()
			}
			f(b, client)
		})
	}
}

// answer is what the in-memory invoker and stream hand out.
var answer = &testingv1.Reply{CallId: "bench"}

// fill is an in-memory invoker: it answers at once by filling the reply.
func fill(_ context.Context, _ string, _, reply any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
	reply.(*testingv1.QueryResponse).Reply = answer
	return nil
}

// BenchmarkUnaryInterceptor measures the client interceptor alone on a
// unary call whose first attempt succeeds, with an in-memory invoker (no
// network), without and with a console registered: what registering adds
// to the happy path (the observer's CallInfo and its OnCallEnd, which
// returns after one comparison).
func BenchmarkUnaryInterceptor(b *testing.B) {
	withConsole(b, benchPolicy(), func(b *testing.B, client *interceptors.Client) {
		ic := client.UnaryClientInterceptor()
		ctx := context.Background()
		req := &testingv1.QueryRequest{Payload: []byte("q")}
		reply := new(testingv1.QueryResponse)
		const method = "/grpcresilience.testing.v1.TestService/Query"
		b.ReportAllocs()
		for b.Loop() {
			if err := ic(ctx, method, req, reply, nil, fill); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// memStream is an in-memory server stream: one reply, then io.EOF.
type memStream struct {
	ctx  context.Context
	sent bool
}

func (s *memStream) Header() (metadata.MD, error) { return nil, nil }
func (s *memStream) Trailer() metadata.MD         { return nil }
func (s *memStream) CloseSend() error             { return nil }
func (s *memStream) Context() context.Context     { return s.ctx }
func (s *memStream) SendMsg(any) error            { return nil }
func (s *memStream) RecvMsg(m any) error {
	if s.sent {
		return io.EOF
	}
	s.sent = true
	m.(*testingv1.ServerStreamResponse).Reply = answer
	return nil
}

// BenchmarkStreamInterceptor measures the client interceptor alone on a
// server stream of one message, with an in-memory stream, for a client
// whose policy does nothing to streams, without and with a console
// registered. Without a console (and with no other observer) the
// interceptor hands the stream back as the streamer made it; with one, it
// wraps the stream to report its end to the console's OnCallEnd.
func BenchmarkStreamInterceptor(b *testing.B) {
	withConsole(b, interceptors.Policy{}, func(b *testing.B, client *interceptors.Client) {
		ic := client.StreamClientInterceptor()
		desc := &grpc.StreamDesc{StreamName: "ServerStream", ServerStreams: true}
		const method = "/grpcresilience.testing.v1.TestService/ServerStream"
		streamer := func(ctx context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn, _ string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
			return &memStream{ctx: ctx}, nil
		}
		ctx := context.Background()
		req := &testingv1.ServerStreamRequest{}
		reply := new(testingv1.ServerStreamResponse)
		b.ReportAllocs()
		for b.Loop() {
			s, err := ic(ctx, desc, nil, method, streamer)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.SendMsg(req); err != nil {
				b.Fatal(err)
			}
			if err := s.CloseSend(); err != nil {
				b.Fatal(err)
			}
			if err := s.RecvMsg(reply); err != nil {
				b.Fatal(err)
			}
			if err := s.RecvMsg(reply); err != io.EOF {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUnaryCall measures a successful unary call through the client
// pipeline over bufconn, without and with a console registered: the
// interceptor's share next to a real transport's.
func BenchmarkUnaryCall(b *testing.B) {
	withConsole(b, benchPolicy(), func(b *testing.B, client *interceptors.Client) {
		srv := testservice.StartTB(b)
		conn := srv.DialTB(b, grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(client.UnaryClientInterceptor()))
		api := testingv1.NewTestServiceClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		req := &testingv1.QueryRequest{Payload: []byte("q")}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := api.Query(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
