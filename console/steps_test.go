package console

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// manual returns a console whose samples the test takes with the
// returned function, which waits until the sample is published.
func manual(t *testing.T, cfg Config) (*Console, func() Snapshot) {
	t.Helper()
	tick := make(chan time.Time)
	c := newConsole(cfg, time.Now, tick)
	t.Cleanup(func() { c.Close() })
	return c, func() Snapshot {
		t.Helper()
		f := c.current.Load()
		select {
		case tick <- time.Now():
		case <-time.After(10 * time.Second):
			t.Fatal("the sampler did not take the tick")
		}
		select {
		case <-f.next:
		case <-time.After(10 * time.Second):
			t.Fatal("no snapshot published after the tick")
		}
		return c.Snapshot()
	}
}

// siblings is a client whose calls of a payload starting with "retry-"
// fail their first attempt with UNAVAILABLE, registered on a manual
// console; with telemetry, each call has a span of its own.
type siblings struct {
	api     testingv1.TestServiceClient
	client  *interceptors.Client
	console *Console
	sample  func() Snapshot
	root    context.Context // the callers' context, with the trace's root span
	traceID string
}

func newSiblings(t *testing.T, withTelemetry bool) *siblings {
	t.Helper()
	var failed sync.Map // payloads whose first attempt failed
	failFirst := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if q, ok := req.(*testingv1.QueryRequest); ok && strings.HasPrefix(string(q.Payload), "retry-") {
			if _, again := failed.LoadOrStore(string(q.Payload), true); !again {
				return nil, status.Error(codes.Unavailable, "first attempt")
			}
		}
		return handler(ctx, req)
	}
	srv := testservice.StartTB(t, testservice.WithServerOptions(grpc.ChainUnaryInterceptor(failFirst)))
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	cfg := interceptors.Config{Default: interceptors.Policy{
		Retry: &interceptors.RetryPolicy{MaxAttempts: 3, Backoff: interceptors.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond}},
	}}
	if withTelemetry {
		tel, err := telemetry.New(telemetry.Config{TracerProvider: tp, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Observer = tel.ClientObserver()
	}
	client, err := interceptors.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &siblings{client: client}
	s.console, s.sample = manual(t, Config{})
	t.Cleanup(s.console.AddClient("c", client))
	conn := srv.DialTB(t, grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(client.UnaryClientInterceptor()))
	s.api = testingv1.NewTestServiceClient(conn)
	ctx, root := tp.Tracer("test").Start(context.Background(), "root")
	t.Cleanup(func() { root.End() })
	s.root = ctx
	s.traceID = root.SpanContext().TraceID().String()
	return s
}

// duringFirstRetry makes the call of payload first and, while it waits to
// retry (after the console recorded its failed attempt), the call of
// payload second, to completion; both from the same caller's span.
func (s *siblings) duringFirstRetry(t *testing.T, first, second string) {
	t.Helper()
	var started atomic.Bool
	// Subscribed after the console, so that it runs after the console's
	// hook has recorded the step. The second call's own retry, if any,
	// comes back here and passes.
	cancel := s.client.Subscribe(interceptors.Observer{OnEvent: func(_ context.Context, e interceptors.Event) {
		if e.Kind != interceptors.EventRetry || !started.CompareAndSwap(false, true) {
			return
		}
		if _, err := s.api.Query(s.root, &testingv1.QueryRequest{Payload: []byte(second)}); err != nil {
			t.Errorf("the second call: %v", err)
		}
	}})
	defer cancel()
	if _, err := s.api.Query(s.root, &testingv1.QueryRequest{Payload: []byte(first)}); err != nil {
		t.Fatalf("the first call: %v", err)
	}
}

// A sibling call in the same trace that succeeds at once, while another
// waits to retry, leaves the other's steps alone: with a span per call
// (telemetry) and with the caller's span shared.
func TestRetriedStepsSurviveASibling(t *testing.T) {
	for _, withTelemetry := range []bool{true, false} {
		t.Run(map[bool]string{true: "telemetry", false: "shared span"}[withTelemetry], func(t *testing.T) {
			s := newSiblings(t, withTelemetry)
			s.duringFirstRetry(t, "retry-a", "plain-b")
			snap := s.sample()
			if len(snap.Retried) != 1 {
				t.Fatalf("retried = %+v, want the one retried call", snap.Retried)
			}
			r := snap.Retried[0]
			if r.Attempts != 2 || r.Code != "OK" || r.TraceID != s.traceID {
				t.Errorf("retried call = %+v, want 2 attempts, OK, trace %s", r, s.traceID)
			}
			if len(r.Steps) != 1 || r.Steps[0].Attempt != 1 || r.Steps[0].Kind != "retry" || r.Steps[0].Code != "Unavailable" {
				t.Errorf("steps = %+v, want the failed first attempt", r.Steps)
			}
		})
	}
}

// Two retried calls that overlap: each keeps its own steps when each has
// a span; sharing their caller's span, neither shows steps rather than
// mixed ones.
func TestRetriedStepsOfOverlappingCalls(t *testing.T) {
	for _, withTelemetry := range []bool{true, false} {
		t.Run(map[bool]string{true: "telemetry", false: "shared span"}[withTelemetry], func(t *testing.T) {
			s := newSiblings(t, withTelemetry)
			s.duringFirstRetry(t, "retry-a", "retry-b")
			snap := s.sample()
			if len(snap.Retried) != 2 {
				t.Fatalf("retried = %+v, want both calls", snap.Retried)
			}
			for _, r := range snap.Retried {
				want := 0
				if withTelemetry {
					want = 1
				}
				if r.Attempts != 2 || len(r.Steps) != want {
					t.Errorf("retried call = %+v, want 2 attempts and %d steps", r, want)
				}
			}
		})
	}
}

// The map of calls being followed stays bounded, and a full map makes
// room by dropping the oldest call.
func TestPendingBounded(t *testing.T) {
	c, _ := manual(t, Config{})
	p := newPipeline(c, "client", "p")
	base := time.Now()
	key := func(i int) callKey {
		var k callKey
		k.trace[0], k.span[0], k.span[1] = 1, byte(i), byte(i>>8)
		return k
	}
	for i := range 3 * maxPending {
		p.addStep(key(i), Step{Attempt: 1, Kind: "retry"}, base.Add(time.Duration(i)), true)
	}
	if n := len(p.pending); n != maxPending {
		t.Fatalf("pending = %d, want %d", n, maxPending)
	}
	if p.takeSteps(key(0)) != nil {
		t.Error("the oldest call was kept")
	}
	if s := p.takeSteps(key(3*maxPending - 1)); len(s) != 1 {
		t.Errorf("the newest call's steps = %+v", s)
	}
	// A step that ends a call does not start following it.
	p.addStep(key(9999), Step{Attempt: 1, Kind: "deadline"}, base, false)
	if p.takeSteps(key(9999)) != nil {
		t.Error("a call of one attempt is followed")
	}
	// Steps of one call are kept up to maxStepsKept.
	for i := range 2 * maxStepsKept {
		p.addStep(key(7777), Step{Attempt: i + 1, Kind: "retry"}, base, true)
	}
	if s := p.takeSteps(key(7777)); len(s) != maxStepsKept {
		t.Errorf("steps kept = %d, want %d", len(s), maxStepsKept)
	}
}
