package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// Overload test parameters. The server can do limit calls at once of
// handlerTime each, so its capacity is limit/handlerTime = 200 calls/s;
// ghz offers 3x that with up to workers calls outstanding, for calls
// calls: about 2s with the bulkhead, 6s without (the server then serves
// only its capacity).
const (
	limit       = 4
	handlerTime = 20 * time.Millisecond
	capacityRPS = int(limit * time.Second / handlerTime)
	offeredRPS  = 3 * capacityRPS
	workers     = 80
	calls       = 1200
)

// testServicePrefix is the prefix of the test service's methods, the only
// ones that use capacity and whose latency is recorded.
const testServicePrefix = "/grpcresilience.testing.v1.TestService/"

// capacity models what really bounds a server: a pool of limit workers
// (threads, database connections) that calls wait for in FIFO order. A Go
// gRPC server running sleeping handlers has no such bound of its own, so
// without it overload would cost nothing and the comparison would show
// nothing.
type capacity chan struct{}

func (c capacity) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !strings.HasPrefix(info.FullMethod, testServicePrefix) {
		return handler(ctx, req)
	}
	select {
	case c <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c }()
	return handler(ctx, req)
}

// admitted records how long the calls that got past the bulkhead took in
// the server, waiting for capacity included.
type admitted struct {
	mu   sync.Mutex
	took []time.Duration
}

func (a *admitted) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !strings.HasPrefix(info.FullMethod, testServicePrefix) {
		return handler(ctx, req)
	}
	start := time.Now()
	resp, err := handler(ctx, req)
	a.mu.Lock()
	a.took = append(a.took, time.Since(start))
	a.mu.Unlock()
	return resp, err
}

// arrivals closes reached once the server has seen at calls of the test
// service, admitted or shed: the sign that the load is on.
type arrivals struct {
	n       atomic.Int64
	at      int64
	reached chan struct{}
}

func (a *arrivals) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if strings.HasPrefix(info.FullMethod, testServicePrefix) && a.n.Add(1) == a.at {
		close(a.reached)
	}
	return handler(ctx, req)
}

func (a *admitted) sorted() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := slices.Clone(a.took)
	slices.Sort(s)
	return s
}

// overloadRun is what one ghz run against one server configuration showed.
type overloadRun struct {
	report        ghzReport
	ok, shed      int
	okP50, okP99  time.Duration // client-side, successful calls
	shedP50       time.Duration // client-side, RESOURCE_EXHAUSTED calls
	shedP99       time.Duration
	serverP99     time.Duration // server-side, admitted calls
	serverAdmits  int
	healthDuring  error
	healthLatency time.Duration
}

// runOverload serves the test service with the chain given and drives it
// with ghz at offeredRPS, checking health once in the middle of the load.
func runOverload(t *testing.T, ghz string, chain ...grpc.UnaryServerInterceptor) overloadRun {
	t.Helper()
	adm := &admitted{}
	// The load counts as started once a quarter of the calls arrived,
	// whether the bulkhead admits them or sheds them.
	arrived := &arrivals{at: calls / 4, reached: make(chan struct{})}
	chain = append(append([]grpc.UnaryServerInterceptor{arrived.unary}, chain...), adm.unary, capacity(make(chan struct{}, limit)).unary)
	srv := testservice.StartTB(t,
		testservice.WithTCP(""),
		testservice.WithServerOptions(grpc.ChainUnaryInterceptor(chain...)),
		testservice.WithRegister(func(s *grpc.Server) {
			healthpb.RegisterHealthServer(s, health.NewServer())
			reflection.Register(s)
		}),
	)

	// Health is checked from a client of its own while ghz is running.
	var run overloadRun
	healthDone := make(chan struct{})
	go func() {
		defer close(healthDone)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		select {
		case <-arrived.reached:
		case <-ctx.Done():
			run.healthDuring = fmt.Errorf("load did not start: %w", ctx.Err())
			return
		}
		conn, err := srv.Dial()
		if err != nil {
			run.healthDuring = err
			return
		}
		defer conn.Close()
		start := time.Now()
		_, run.healthDuring = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		run.healthLatency = time.Since(start)
	}()

	run.report = runGhz(t, ghz, srv.Target(),
		"--call", "grpcresilience.testing.v1.TestService/Unary",
		"-d", `{"behavior":{"sleep":"0.02s"}}`,
		"-c", fmt.Sprint(workers),
		"--rps", fmt.Sprint(offeredRPS),
		"-n", fmt.Sprint(calls),
		"-t", "20s",
		"--disable-template-functions", "--disable-template-data",
	)
	<-healthDone
	run.ok = run.report.StatusCodeDist["OK"]
	run.shed = run.report.StatusCodeDist["ResourceExhausted"]
	run.okP50, run.okP99 = run.report.percentile(50), run.report.percentile(99)
	shed := run.report.latencies("ResourceExhausted")
	run.shedP50, run.shedP99 = quantile(shed, 0.5), quantile(shed, 0.99)
	took := adm.sorted()
	run.serverAdmits, run.serverP99 = len(took), quantile(took, 0.99)
	return run
}

// At 3x the server's capacity, the bulkhead sheds the excess quickly with
// RESOURCE_EXHAUSTED and keeps the admitted calls' latency near the
// handler's time, while without it every call queues for capacity and the
// latency of all of them grows. Health answers throughout.
func TestOverloadShedding(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ghz and drives a server with it for seconds")
	}
	ghz := buildGhz(t)

	p, err := server.New(server.Config{Bulkhead: server.BulkheadConfig{Limit: limit}})
	if err != nil {
		t.Fatal(err)
	}
	with := runOverload(t, ghz, p.UnaryServerInterceptor())
	without := runOverload(t, ghz)

	for _, r := range []struct {
		name string
		run  overloadRun
	}{{"with bulkhead", with}, {"without bulkhead", without}} {
		t.Logf("%s: %d calls in %v (%.0f/s): %v; OK p50 %v p99 %v; shed p50 %v p99 %v; server-side admitted p99 %v of %d; health %v in %v",
			r.name, r.run.report.Count, r.run.report.Total, r.run.report.Rps, r.run.report.StatusCodeDist,
			r.run.okP50, r.run.okP99, r.run.shedP50, r.run.shedP99, r.run.serverP99, r.run.serverAdmits, r.run.healthDuring, r.run.healthLatency)
		if r.run.healthDuring != nil {
			t.Errorf("%s: health check under load: %v", r.name, r.run.healthDuring)
		}
	}
	ratio := func(a, b time.Duration) float64 { return float64(a) / float64(max(b, 1)) }
	t.Logf("ratios: admitted p50 without/with bulkhead %.1fx (client), p99 %.1fx (client), %.1fx (server); with bulkhead, admitted p99/handler time %.1fx, shed p50/handler time %.2fx, shed p99/admitted p99 %.2fx",
		ratio(without.okP50, with.okP50), ratio(without.okP99, with.okP99), ratio(without.serverP99, with.serverP99),
		ratio(with.okP99, handlerTime), ratio(with.shedP50, handlerTime), ratio(with.shedP99, with.okP99))

	// With the bulkhead: a good share is shed, and the rest succeeds.
	if with.shed < calls/5 || with.ok < calls/10 || with.ok+with.shed != int(with.report.Count) {
		t.Errorf("with bulkhead: %v, want a fifth or more shed, the rest OK", with.report.StatusCodeDist)
	}
	// Admitted calls stay near the handler's time: generous bounds for a
	// loaded 2-core machine under the race detector.
	if with.serverP99 > 5*handlerTime {
		t.Errorf("with bulkhead: server-side admitted p99 %v, want below %v", with.serverP99, 5*handlerTime)
	}
	// Client-side figures include ghz's own scheduling on a busy machine,
	// so the test bounds their median; their p99 is in the log.
	if with.okP50 > 5*handlerTime {
		t.Errorf("with bulkhead: client-side OK p50 %v, want below %v", with.okP50, 5*handlerTime)
	}
	// Shed calls are answered quickly: most well before a handler would.
	if with.shedP50 >= handlerTime {
		t.Errorf("with bulkhead: shed p50 %v, want below the handler time %v", with.shedP50, handlerTime)
	}
	// Without it nothing is shed and every call queues for capacity.
	if without.shed != 0 || without.ok != int(without.report.Count) {
		t.Errorf("without bulkhead: %v, want every call OK", without.report.StatusCodeDist)
	}
	if ratio(without.serverP99, with.serverP99) < 2 || ratio(without.okP50, with.okP50) < 2 {
		t.Errorf("without/with bulkhead: server-side admitted p99 %v/%v, client-side OK p50 %v/%v; want the bulkhead to cut both at least 2x",
			without.serverP99, with.serverP99, without.okP50, with.okP50)
	}
}
