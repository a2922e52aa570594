package server_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// expire is an interceptor placed before the pipeline that makes every
// call's deadline lie in the past, as if the call had waited in a queue
// until its time ran out.
var expire = outer{
	unary: []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
		defer cancel()
		return handler(ctx, req)
	}},
	stream: []grpc.StreamServerInterceptor{func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, cancel := context.WithDeadline(ss.Context(), time.Now().Add(-time.Second))
		defer cancel()
		return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	}},
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

func checkDeadlineRejection(t *testing.T, r *rig, err error) {
	t.Helper()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DEADLINE_EXCEEDED", err)
	}
	serr := r.errs.last()
	var te *resilience.TimeoutError
	if !errors.As(serr, &te) || !errors.Is(serr, context.DeadlineExceeded) {
		t.Errorf("server-side error %v does not match *TimeoutError and DeadlineExceeded", serr)
	}
	if st, ok := status.FromError(serr); !ok || st.Code() != codes.DeadlineExceeded {
		t.Errorf("server-side error %v is not a DEADLINE_EXCEEDED status", serr)
	}
}

// A call whose deadline has passed is rejected without running the
// handler or taking a bulkhead slot.
func TestExpiredDeadlineRejectedWithoutRunningHandler(t *testing.T) {
	rec := &recorder{}
	r, p := startPipeline(t, server.Config{Bulkhead: server.BulkheadConfig{Limit: 1}, Observer: rec.observer()}, expire)
	_, err := r.client.Unary(context.Background(), unaryReq("late"))
	checkDeadlineRejection(t, r, err)

	s, err := r.client.ServerStream(context.Background(), &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "late", StreamMessages: 2}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Recv()
	checkDeadlineRejection(t, r, err)

	if got := r.srv.Service().Attempts("late"); got != 0 {
		t.Errorf("the handler ran %d times, want 0", got)
	}
	if got := p.Bulkhead().Partitions().Overflow().Metrics().Admitted; got != 0 {
		t.Errorf("the bulkhead admitted %d calls, want 0", got)
	}
	e, ok := rec.first(server.EventDeadlineRejected)
	if !ok || e.Remaining > 0 || e.Code != codes.DeadlineExceeded {
		t.Errorf("event = %+v, %v; want a rejection with no time remaining", e, ok)
	}
	if got := rec.count(server.EventDeadlineRejected); got != 2 {
		t.Errorf("%d rejection events, want 2", got)
	}
}

// A call with less than MinRemaining left is rejected at once; one with
// more runs.
func TestMinRemaining(t *testing.T) {
	r, _ := startPipeline(t, server.Config{Deadline: server.DeadlineConfig{MinRemaining: time.Minute}}, outer{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := r.client.Unary(ctx, unaryReq("short"))
	checkDeadlineRejection(t, r, err)
	var te *resilience.TimeoutError
	if errors.As(r.errs.last(), &te) && (te.After <= 0 || te.After > 10*time.Second) {
		t.Errorf("TimeoutError.After = %v, want the time left, in (0, 10s]", te.After)
	}
	if got := r.srv.Service().Attempts("short"); got != 0 {
		t.Errorf("the handler ran %d times, want 0", got)
	}

	ctx, cancel = context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if _, err := r.client.Unary(ctx, unaryReq("long")); err != nil {
		t.Errorf("call with an hour left: %v", err)
	}
	if _, err := r.client.Unary(context.Background(), unaryReq("none")); err != nil {
		t.Errorf("call without a deadline: %v", err)
	}
}

// deadlines is a handler-side interceptor that records the deadline each
// call runs with.
type deadlines struct {
	mu  sync.Mutex
	got []time.Duration // time left when the handler starts; -1 for none
}

func (d *deadlines) record(ctx context.Context) {
	left := time.Duration(-1)
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	d.mu.Lock()
	d.got = append(d.got, left)
	d.mu.Unlock()
}

func (d *deadlines) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	d.record(ctx)
	return handler(ctx, req)
}

func (d *deadlines) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	d.record(ss.Context())
	return handler(srv, ss)
}

// A call without a deadline gets the default one, unary or stream; a call
// with its own keeps it.
func TestDefaultDeadline(t *testing.T) {
	const def = 20 * time.Second
	rec := &recorder{}
	p, err := server.New(server.Config{Deadline: server.DeadlineConfig{Default: def}, Observer: rec.observer()})
	if err != nil {
		t.Fatal(err)
	}
	d := &deadlines{}
	r := startRig(t,
		grpc.UnaryServerInterceptor(chainUnary(p.UnaryServerInterceptor(), d.unary)),
		grpc.StreamServerInterceptor(chainStream(p.StreamServerInterceptor(), d.stream)),
		outer{})

	if _, err := r.client.Unary(context.Background(), unaryReq("none")); err != nil {
		t.Fatal(err)
	}
	s, err := r.client.ServerStream(context.Background(), &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{StreamMessages: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = s.Recv()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if _, err := r.client.Unary(ctx, unaryReq("own")); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	got := d.got
	d.mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("recorded %d calls, want 3", len(got))
	}
	for i, left := range got[:2] {
		if left <= 0 || left > def {
			t.Errorf("call %d without a deadline ran with %v left, want (0, %v]", i, left, def)
		}
	}
	if got[2] <= def {
		t.Errorf("call with an hour left ran with %v left, want its own deadline", got[2])
	}
	if n := rec.count(server.EventDefaultDeadline); n != 2 {
		t.Errorf("%d default-deadline events, want 2", n)
	}
}

// The default deadline ends a slow call.
func TestDefaultDeadlineEndsSlowCall(t *testing.T) {
	r, _ := startPipeline(t, server.Config{Deadline: server.DeadlineConfig{Default: 50 * time.Millisecond}}, outer{})
	_, err := r.client.Unary(context.Background(), &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{Sleep: durationpb.New(time.Hour)}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("got %v, want DEADLINE_EXCEEDED", err)
	}
}

// The zero Config rejects expired calls, a bidi stream as well as a unary
// call, without running the handler.
func TestZeroConfigRejectsExpiredCalls(t *testing.T) {
	r, _ := startPipeline(t, server.Config{}, expire)
	_, err := r.client.Unary(context.Background(), unaryReq("late"))
	checkDeadlineRejection(t, r, err)
	s, err := r.client.BidiStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Recv()
	checkDeadlineRejection(t, r, err)
	if got := r.srv.Service().TotalAttempts(); got != 0 {
		t.Errorf("the handler ran %d times, want 0", got)
	}
}

func chainUnary(a, b grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return a(ctx, req, info, func(ctx context.Context, req any) (any, error) { return b(ctx, req, info, handler) })
	}
}

func chainStream(a, b grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return a(srv, ss, info, func(srv any, ss grpc.ServerStream) error { return b(srv, ss, info, handler) })
	}
}
