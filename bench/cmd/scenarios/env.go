package main

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// env is a loopback test server for one scenario (every scenario calls
// IdempotentUnary, so that every library may retry and hedge it), with a counter of the
// attempts it sees (counted before any other server interceptor, so an
// attempt shed or faulted there counts too) and a chaos stage to inject
// outages and latency.
type env struct {
	srv      *testservice.Server
	chaos    *server.Chaos
	attempts atomic.Int64
}

// newEnv starts a server on 127.0.0.1 with the counting interceptor, then
// inner (if any), then a chaos stage with the faults given.
func newEnv(faults server.FaultConfig, inner ...grpc.UnaryServerInterceptor) (*env, error) {
	e := &env{}
	chaos, err := server.New(server.Config{Chaos: server.ChaosConfig{Seed: 1, Faults: faults}})
	if err != nil {
		return nil, err
	}
	e.chaos = chaos.Chaos()
	chain := append([]grpc.UnaryServerInterceptor{e.count}, inner...)
	chain = append(chain, chaos.UnaryServerInterceptor())
	srv, err := testservice.Start(testservice.WithTCP(""),
		testservice.WithServerOptions(grpc.ChainUnaryInterceptor(chain...)))
	if err != nil {
		return nil, err
	}
	e.srv = srv
	return e, nil
}

// count is the outermost server interceptor: one attempt seen.
func (e *env) count(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	e.attempts.Add(1)
	return h(ctx, req)
}

// close stops the server.
func (e *env) close() { e.srv.Stop() }

// conn is one library's connection to an env: the stub to call and, for
// libraries that wrap the call rather than intercept it, the wrapper.
type conn struct {
	cc     *grpc.ClientConn
	client testingv1.TestServiceClient
	wrap   func(ctx context.Context, call func(ctx context.Context) error) error
	close  func()
}

// dial connects lib to e and waits until the connection is ready, so that
// no scenario measures connection set-up.
func (e *env) dial(lib lib) (*conn, error) {
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, lib.dial...)
	cc, err := grpc.NewClient(e.srv.Target(), opts...)
	if err != nil {
		return nil, err
	}
	c := &conn{cc: cc, client: testingv1.NewTestServiceClient(cc), wrap: lib.wrap, close: func() {
		cc.Close()
		if lib.close != nil {
			lib.close()
		}
	}}
	// One call with WaitForReady and no interceptor-visible failure:
	// the chaos stage may fail it, which is fine, it only has to connect.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cc.Connect()
	for state := cc.GetState(); state.String() != "READY"; state = cc.GetState() {
		if !cc.WaitForStateChange(ctx, state) {
			c.close()
			return nil, fmt.Errorf("%s: connection not ready: %v", lib.name, ctx.Err())
		}
	}
	return c, nil
}

// call makes one logical call, through the library's wrapper if it has one.
func (c *conn) call(ctx context.Context, req *testingv1.IdempotentUnaryRequest) error {
	do := func(ctx context.Context) error {
		_, err := c.client.IdempotentUnary(ctx, req)
		return err
	}
	if c.wrap != nil {
		return c.wrap(ctx, do)
	}
	return do(ctx)
}

// percentile returns the p-th percentile (0-100) of ds, nearest rank; 0 for
// no samples. It sorts ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(p/100*float64(len(ds))+0.5) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
