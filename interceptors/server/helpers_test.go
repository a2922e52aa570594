package server_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// gauge is a handler-side interceptor, last in the chain: it counts the
// calls that reached the handler and the most that were in it at once.
type gauge struct {
	inFlight, high, reached atomic.Int64
}

func (g *gauge) enter() {
	n := g.inFlight.Add(1)
	g.reached.Add(1)
	for {
		h := g.high.Load()
		if n <= h || g.high.CompareAndSwap(h, n) {
			return
		}
	}
}

func (g *gauge) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	g.enter()
	defer g.inFlight.Add(-1)
	return handler(ctx, req)
}

func (g *gauge) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	g.enter()
	defer g.inFlight.Add(-1)
	return handler(srv, ss)
}

// recorder keeps every event of the Observer its observer method
// returns.
type recorder struct {
	mu     sync.Mutex
	events []server.Event
}

func (r *recorder) observer() server.Observer { return server.Observer{OnEvent: r.observe} }

func (r *recorder) observe(_ context.Context, e server.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) snapshot() []server.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]server.Event(nil), r.events...)
}

func (r *recorder) count(kind server.EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func (r *recorder) first(kind server.EventKind) (server.Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Kind == kind {
			return e, true
		}
	}
	return server.Event{}, false
}

// errCapture is an interceptor placed first in the chain: it keeps the
// last error the rest of the chain returned, as the server sees it.
type errCapture struct {
	mu  sync.Mutex
	err error
	ch  chan error // every error, as long as there is room
}

func (c *errCapture) set(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
	select {
	case c.ch <- err:
	default:
	}
}

// next waits for the server to finish the next call and returns its error.
func (c *errCapture) next(t *testing.T) error {
	t.Helper()
	select {
	case err := <-c.ch:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not finish the call")
		return nil
	}
}

func (c *errCapture) last() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *errCapture) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	c.set(err)
	return resp, err
}

func (c *errCapture) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := handler(srv, ss)
	c.set(err)
	return err
}

// rig is a loopback TCP test server running a pipeline, with health and
// reflection registered, an errCapture first and a gauge last in the chain.
type rig struct {
	srv    *testservice.Server
	client testingv1.TestServiceClient
	conn   *grpc.ClientConn
	health *health.Server
	gauge  *gauge
	errs   *errCapture
}

// outer are interceptors placed between errCapture and the pipeline.
type outer struct {
	unary  []grpc.UnaryServerInterceptor
	stream []grpc.StreamServerInterceptor
}

func startRig(t *testing.T, unary grpc.UnaryServerInterceptor, stream grpc.StreamServerInterceptor, o outer) *rig {
	t.Helper()
	r := &rig{gauge: &gauge{}, errs: &errCapture{ch: make(chan error, 1<<16)}, health: health.NewServer()}
	us := append(append([]grpc.UnaryServerInterceptor{r.errs.unary}, o.unary...), unary, r.gauge.unary)
	ss := append(append([]grpc.StreamServerInterceptor{r.errs.stream}, o.stream...), stream, r.gauge.stream)
	r.srv = testservice.StartTB(t,
		testservice.WithTCP(""),
		testservice.WithServerOptions(grpc.ChainUnaryInterceptor(us...), grpc.ChainStreamInterceptor(ss...)),
		testservice.WithRegister(func(s *grpc.Server) {
			healthpb.RegisterHealthServer(s, r.health)
			reflection.Register(s)
		}),
	)
	r.conn = r.srv.DialTB(t)
	r.client = testingv1.NewTestServiceClient(r.conn)
	return r
}

func startPipeline(t *testing.T, cfg server.Config, o outer) (*rig, *server.Server) {
	t.Helper()
	p, err := server.New(cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	return startRig(t, p.UnaryServerInterceptor(), p.StreamServerInterceptor(), o), p
}

// block starts n unary calls with call id id that stay in the handler
// until the returned function is called, and returns once all n are
// inside. The release function waits for the calls to end.
func (r *rig) block(t *testing.T, id string, n int, md ...string) (release func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, _ = r.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: id, Sleep: durationpb.New(time.Hour)}})
		})
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if err := r.srv.Service().WaitAttempts(wctx, id, n); err != nil {
		cancel()
		wg.Wait()
		t.Fatalf("blocked calls did not reach the handler: %v", err)
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

func unaryReq(id string) *testingv1.UnaryRequest {
	return &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: id}}
}
