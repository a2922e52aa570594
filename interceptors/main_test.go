package interceptors_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// transports are the two ways the harness serves: in memory and loopback TCP.
var transports = []struct {
	name string
	opts []testservice.Option
}{
	{"bufconn", nil},
	{"tcp", []testservice.Option{testservice.WithTCP("")}},
}

// forTransports runs fn once per transport.
func forTransports(t *testing.T, fn func(t *testing.T, opts []testservice.Option)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { fn(t, tr.opts) })
	}
}

// serverEntry is one attempt as a server interceptor saw it.
type serverEntry struct {
	method   string
	callID   string
	start    time.Time
	end      time.Time
	code     codes.Code
	ctxErr   error // the handler's context error when it returned
	previous string
}

// serverLog records every unary attempt the server handles, with its start
// time and how it ended.
type serverLog struct {
	mu      sync.Mutex
	entries []serverEntry
	ended   chan serverEntry
}

func newServerLog() *serverLog { return &serverLog{ended: make(chan serverEntry, 256)} }

type behaved interface{ GetBehavior() *testingv1.Behavior }

func (l *serverLog) interceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		e := serverEntry{method: info.FullMethod, start: time.Now()}
		if b, ok := req.(behaved); ok {
			e.callID = b.GetBehavior().GetCallId()
		}
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(testservice.PreviousAttemptsHeader); len(v) > 0 {
				e.previous = v[0]
			}
		}
		resp, err := handler(ctx, req)
		e.end, e.code, e.ctxErr = time.Now(), status.Code(err), ctx.Err()
		l.mu.Lock()
		l.entries = append(l.entries, e)
		l.mu.Unlock()
		select {
		case l.ended <- e:
		default:
		}
		return resp, err
	}
}

func (l *serverLog) all() []serverEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]serverEntry(nil), l.entries...)
}

// env is a test server with a client connection through a pipeline.
type env struct {
	srv    *testservice.Server
	svc    *testservice.Service
	log    *serverLog
	conn   *grpc.ClientConn
	client testingv1.TestServiceClient
}

// newEnv starts a server with the given transport options and dials it
// through the interceptors, after gRPC's own retries are disabled.
func newEnv(t *testing.T, topts []testservice.Option, ints ...grpc.UnaryClientInterceptor) *env {
	t.Helper()
	return newEnvDial(t, topts, nil, ints...)
}

func newEnvDial(t *testing.T, topts []testservice.Option, dopts []grpc.DialOption, ints ...grpc.UnaryClientInterceptor) *env {
	t.Helper()
	log := newServerLog()
	opts := append([]testservice.Option{testservice.WithServerOptions(grpc.ChainUnaryInterceptor(log.interceptor()))}, topts...)
	srv := testservice.StartTB(t, opts...)
	dopts = append([]grpc.DialOption{grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(ints...)}, dopts...)
	conn := srv.DialTB(t, dopts...)
	return &env{srv: srv, svc: srv.Service(), log: log, conn: conn, client: testingv1.NewTestServiceClient(conn)}
}

// newPipeline builds a Client whose default policy is def, or fails the
// test.
func newPipeline(t testing.TB, def interceptors.Policy) *interceptors.Client {
	t.Helper()
	return newClient(t, interceptors.Config{Default: def})
}

// newClient builds the Client cfg describes, or fails the test.
func newClient(t testing.TB, cfg interceptors.Config) *interceptors.Client {
	t.Helper()
	c, err := interceptors.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fastRetry is a retry policy with short constant waits and no budget, so
// that tests count attempts exactly.
func fastRetry(attempts int) *interceptors.RetryPolicy {
	return &interceptors.RetryPolicy{
		MaxAttempts: attempts,
		Backoff:     interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: time.Millisecond},
		Jitter:      interceptors.JitterNone,
		Budget:      interceptors.NoBudget,
	}
}

// ctxTimeout is a context with a generous deadline for one test call.
func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor receives from ch or fails the test after d.
func waitFor[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}
