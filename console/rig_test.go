package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// rig is a real gRPC server (bufconn) behind the server pipeline, a
// client through the client pipeline, and a console serving both over
// loopback HTTP. While fail is set, the server fails every call with
// UNAVAILABLE before the pipeline sees it: an outage switched on and off
// deterministically.
type rig struct {
	fail     atomic.Bool
	srv      *testservice.Server
	pipeline *server.Server
	client   *interceptors.Client
	conn     *grpc.ClientConn
	api      testingv1.TestServiceClient
	console  *Console
	http     *httptest.Server
	// opened and closed are when the client's breaker last opened and
	// closed, in Unix nanoseconds, as its own observer heard it.
	opened, closed atomic.Int64
	tick           chan time.Time // drives the samples of a manual rig
}

// sample makes a manual rig's console take a regular sample and waits
// until it is published.
func (r *rig) sample(t testing.TB) Snapshot {
	t.Helper()
	f := r.console.current.Load()
	select {
	case r.tick <- time.Now():
	case <-time.After(10 * time.Second):
		t.Fatal("the sampler did not take the tick")
	}
	select {
	case <-f.next:
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot published after the tick")
	}
	return r.console.Snapshot()
}

type rigConfig struct {
	console Config
	server  server.Config
	mount   string // the HTTP pattern; "/" when empty
	// manual makes the console sample only when the test calls sample.
	manual bool
}

func newRig(t testing.TB, rc rigConfig) *rig {
	t.Helper()
	r := &rig{}
	var err error
	r.pipeline, err = server.New(rc.server)
	if err != nil {
		t.Fatal(err)
	}
	failing := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if r.fail.Load() {
			return nil, status.Error(codes.Unavailable, "outage")
		}
		return handler(ctx, req)
	}
	r.srv = testservice.StartTB(t, testservice.WithServerOptions(
		grpc.ChainUnaryInterceptor(r.pipeline.UnaryServerInterceptor(), failing),
		grpc.ChainStreamInterceptor(r.pipeline.StreamServerInterceptor()),
	))
	r.client, err = interceptors.NewClient(interceptors.Config{
		Default: interceptors.Policy{
			Retry: &interceptors.RetryPolicy{MaxAttempts: 2, Backoff: interceptors.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond}},
			Breaker: &interceptors.BreakerPolicy{
				FailureThreshold: 3,
				OpenDuration:     300 * time.Millisecond,
				SuccessThreshold: 1,
			},
		},
		Observer: interceptors.Observer{OnEvent: func(_ context.Context, e interceptors.Event) {
			if e.Kind != interceptors.EventBreakerStateChange {
				return
			}
			switch e.StateChange.To {
			case breaker.Open:
				r.opened.Store(time.Now().UnixNano())
			case breaker.Closed:
				r.closed.Store(time.Now().UnixNano())
			}
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.conn = r.srv.DialTB(t, grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(r.client.UnaryClientInterceptor()))
	r.api = testingv1.NewTestServiceClient(r.conn)

	if rc.manual {
		r.tick = make(chan time.Time)
		r.console = newConsole(rc.console, time.Now, r.tick)
	} else if r.console, err = New(rc.console); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.console.Close() })
	t.Cleanup(r.console.AddClient("payments", r.client))
	t.Cleanup(r.console.AddServer("api", r.pipeline))
	mux := http.NewServeMux()
	mount := rc.mount
	if mount == "" {
		mount = "/"
	}
	mux.Handle(mount, r.console)
	r.http = httptest.NewServer(mux)
	t.Cleanup(r.http.Close)
	return r
}

// url returns the page's URL.
func (r *rig) url(mount string) string {
	if mount == "" {
		mount = "/"
	}
	return r.http.URL + mount
}

// call makes one Query call with the metadata kv, and returns its error.
func (r *rig) call(t testing.TB, kv ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if len(kv) > 0 {
		ctx = metadataContext(ctx, kv...)
	}
	_, err := r.api.Query(ctx, &testingv1.QueryRequest{Payload: []byte("q")})
	return err
}

// until polls f every few milliseconds until it returns true, for at most
// d, and reports whether f did: for a condition that needs wall time to
// come true (a breaker's open duration), never as a fixed wait.
func until(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// emptyMsg is a message of no fields, for calls of unknown methods.
type emptyMsg = emptypb.Empty

// pipesForTest returns the registered pipelines.
func (c *Console) pipesForTest() []*pipeline {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pipes)
}
