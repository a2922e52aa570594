package testservice

import (
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// PushbackTrailer is the trailer in which a server tells a client how long
// to wait before its next attempt, in milliseconds (gRFC A6).
const PushbackTrailer = "grpc-retry-pushback-ms"

// PreviousAttemptsHeader is the request header in which a client tells the
// server how many attempts of the call came before this one (gRFC A6).
const PreviousAttemptsHeader = "grpc-previous-rpc-attempts"

// Attempt is one attempt the service saw.
type Attempt struct {
	// Method is the full method name, e.g. "/grpcresilience.testing.v1.TestService/Unary".
	Method string
	// CallID is the call id of the request's Behavior.
	CallID string
	// Number is the 1-based number of this attempt of CallID.
	Number int
	// PreviousAttempts is the grpc-previous-rpc-attempts header, or "" when absent.
	PreviousAttempts string
	// Failed reports whether the service was told to fail this attempt.
	Failed bool
}

// Service implements testingv1.TestServiceServer and records every attempt
// it sees. Its zero value is not usable; create one with [NewService].
//
// A Service is safe for concurrent use.
type Service struct {
	testingv1.UnimplementedTestServiceServer

	mu        sync.Mutex
	perCall   map[string]int
	perMethod map[string]int
	log       []Attempt
	changed   chan struct{} // closed and replaced at each attempt
}

var _ testingv1.TestServiceServer = (*Service)(nil)

// NewService returns a Service that has seen no attempt.
func NewService() *Service {
	return &Service{perCall: map[string]int{}, perMethod: map[string]int{}, changed: make(chan struct{})}
}

// WaitAttempts blocks until the service has seen at least n attempts of
// callID, and returns nil then, or ctx.Err() when ctx is done first. Tests
// use it to act while a call is known to be in the server, without sleeping.
func (s *Service) WaitAttempts(ctx context.Context, callID string, n int) error {
	for {
		s.mu.Lock()
		seen, changed := s.perCall[callID], s.changed
		s.mu.Unlock()
		if seen >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Attempts returns how many attempts of callID the service saw.
func (s *Service) Attempts(callID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perCall[callID]
}

// MethodAttempts returns how many attempts of the full method name (for
// example testingv1.TestService_Unary_FullMethodName) the service saw.
func (s *Service) MethodAttempts(fullMethod string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perMethod[fullMethod]
}

// TotalAttempts returns how many attempts the service saw in all.
func (s *Service) TotalAttempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.log)
}

// Log returns a copy of every attempt seen, in the order they arrived.
func (s *Service) Log() []Attempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// Reset forgets every attempt seen.
func (s *Service) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.perCall)
	clear(s.perMethod)
	s.log = nil
}

// attempt is one attempt in progress: what the behavior says for it.
type attempt struct {
	behavior *testingv1.Behavior
	number   int
	previous string
	fail     bool
}

// begin counts an attempt of method for b and decides whether it fails.
func (s *Service) begin(ctx context.Context, method string, b *testingv1.Behavior) attempt {
	var previous string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(PreviousAttemptsHeader); len(v) > 0 {
			previous = v[0]
		}
	}
	s.mu.Lock()
	s.perCall[b.GetCallId()]++
	s.perMethod[method]++
	n := s.perCall[b.GetCallId()]
	fail := b.GetFailAttempts() < 0 || n <= int(b.GetFailAttempts())
	s.log = append(s.log, Attempt{Method: method, CallID: b.GetCallId(), Number: n, PreviousAttempts: previous, Failed: fail})
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return attempt{behavior: b, number: n, previous: previous, fail: fail}
}

// sleep waits as long as the behavior says for this attempt, or until ctx
// is done, and returns ctx's status error in that case.
func (a attempt) sleep(ctx context.Context) error {
	d := a.behavior.GetSleep().AsDuration()
	if d <= 0 || (a.behavior.GetSleepAttempts() > 0 && a.number > int(a.behavior.GetSleepAttempts())) {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// reply describes this attempt in a response.
func (a attempt) reply(payload []byte, sequence int) *testingv1.Reply {
	return &testingv1.Reply{
		CallId:              a.behavior.GetCallId(),
		Attempt:             int32(a.number),
		Payload:             payload,
		Sequence:            int32(sequence),
		PreviousRpcAttempts: a.previous,
	}
}

// failure returns the trailer to send with a failing attempt, if any, and
// its status error.
func (a attempt) failure() (metadata.MD, error) {
	b := a.behavior
	code := codes.Code(b.GetFailCode())
	if code == codes.OK {
		code = codes.Unavailable
	}
	msg := b.GetFailMessage()
	if msg == "" {
		msg = "testservice: attempt " + strconv.Itoa(a.number) + " of call " + b.GetCallId() + " fails as requested"
	}
	st := status.New(code, msg)
	if d := b.GetRetryInfoDelay(); d != nil {
		if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d.AsDuration())}); err == nil {
			st = withInfo
		}
	}
	var trailer metadata.MD
	if b.GetPushbackMs() != "" {
		trailer = metadata.Pairs(PushbackTrailer, b.GetPushbackMs())
	}
	return trailer, st.Err()
}

// Unary implements testingv1.TestServiceServer.
func (s *Service) Unary(ctx context.Context, req *testingv1.UnaryRequest) (*testingv1.UnaryResponse, error) {
	r, err := s.unary(ctx, testingv1.TestService_Unary_FullMethodName, req.GetBehavior(), req.GetPayload())
	if err != nil {
		return nil, err
	}
	return &testingv1.UnaryResponse{Reply: r}, nil
}

// IdempotentUnary implements testingv1.TestServiceServer.
func (s *Service) IdempotentUnary(ctx context.Context, req *testingv1.IdempotentUnaryRequest) (*testingv1.IdempotentUnaryResponse, error) {
	r, err := s.unary(ctx, testingv1.TestService_IdempotentUnary_FullMethodName, req.GetBehavior(), req.GetPayload())
	if err != nil {
		return nil, err
	}
	return &testingv1.IdempotentUnaryResponse{Reply: r}, nil
}

// Query implements testingv1.TestServiceServer.
func (s *Service) Query(ctx context.Context, req *testingv1.QueryRequest) (*testingv1.QueryResponse, error) {
	r, err := s.unary(ctx, testingv1.TestService_Query_FullMethodName, req.GetBehavior(), req.GetPayload())
	if err != nil {
		return nil, err
	}
	return &testingv1.QueryResponse{Reply: r}, nil
}

func (s *Service) unary(ctx context.Context, method string, b *testingv1.Behavior, payload []byte) (*testingv1.Reply, error) {
	a := s.begin(ctx, method, b)
	if err := a.sleep(ctx); err != nil {
		return nil, err
	}
	if a.fail {
		trailer, err := a.failure()
		if trailer != nil {
			// The error is already decided; a trailer that cannot be set
			// only means the client sees no pushback.
			_ = grpc.SetTrailer(ctx, trailer)
		}
		return nil, err
	}
	return a.reply(payload, 0), nil
}

// ServerStream implements testingv1.TestServiceServer.
func (s *Service) ServerStream(req *testingv1.ServerStreamRequest, stream grpc.ServerStreamingServer[testingv1.ServerStreamResponse]) error {
	ctx := stream.Context()
	a := s.begin(ctx, testingv1.TestService_ServerStream_FullMethodName, req.GetBehavior())
	if err := a.sleep(ctx); err != nil {
		return err
	}
	n := int(req.GetBehavior().GetStreamMessages())
	if a.fail {
		n = int(req.GetBehavior().GetFailAfterMessages())
	}
	for i := range n {
		if err := stream.Send(&testingv1.ServerStreamResponse{Reply: a.reply(req.GetPayload(), i)}); err != nil {
			return err
		}
	}
	return a.streamEnd(stream)
}

// streamEnd ends a streaming attempt: with its failure if it fails.
func (a attempt) streamEnd(stream grpc.ServerStream) error {
	if !a.fail {
		return nil
	}
	trailer, err := a.failure()
	if trailer != nil {
		stream.SetTrailer(trailer)
	}
	return err
}

// ClientStream implements testingv1.TestServiceServer.
func (s *Service) ClientStream(stream grpc.ClientStreamingServer[testingv1.ClientStreamRequest, testingv1.ClientStreamResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	var payloads [][]byte
	if err == nil {
		payloads = append(payloads, first.GetPayload())
	} else if !errors.Is(err, io.EOF) {
		return err
	}
	// first is nil when the client sent nothing; its getters are nil-safe.
	a := s.begin(ctx, testingv1.TestService_ClientStream_FullMethodName, first.GetBehavior())
	if err := a.sleep(ctx); err != nil {
		return err
	}
	for err == nil {
		if a.fail && len(payloads) >= int(a.behavior.GetFailAfterMessages()) {
			return a.streamEnd(stream)
		}
		var req *testingv1.ClientStreamRequest
		req, err = stream.Recv()
		if err == nil {
			payloads = append(payloads, req.GetPayload())
		}
	}
	if !errors.Is(err, io.EOF) {
		return err
	}
	if a.fail {
		return a.streamEnd(stream)
	}
	return stream.SendAndClose(&testingv1.ClientStreamResponse{Reply: a.reply(nil, 0), Payloads: payloads})
}

// BidiStream implements testingv1.TestServiceServer.
func (s *Service) BidiStream(stream grpc.BidiStreamingServer[testingv1.BidiStreamRequest, testingv1.BidiStreamResponse]) error {
	ctx := stream.Context()
	req, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return err
	}
	a := s.begin(ctx, testingv1.TestService_BidiStream_FullMethodName, req.GetBehavior())
	if err := a.sleep(ctx); err != nil {
		return err
	}
	for i := 0; ; i++ {
		if a.fail && i >= int(a.behavior.GetFailAfterMessages()) {
			return a.streamEnd(stream)
		}
		if err := stream.Send(&testingv1.BidiStreamResponse{Reply: a.reply(req.GetPayload(), i)}); err != nil {
			return err
		}
		req, err = stream.Recv()
		if errors.Is(err, io.EOF) {
			return a.streamEnd(stream)
		}
		if err != nil {
			return err
		}
	}
}
