package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/console"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/retry"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// clientHeader names the client a call comes from; the server's bulkhead
// gives each client its own partition, so that both get the same capacity.
const clientHeader = "x-demo-client"

// The resilient client's settings.
const (
	maxAttempts    = 4
	backoffBase    = 10 * time.Millisecond
	backoffCap     = 200 * time.Millisecond
	attemptTimeout = 300 * time.Millisecond
	defaultTimeout = time.Second
	// budgetRatio and budgetFloor: retries may add budgetRatio of the calls
	// of the last budgetTTL, plus budgetFloor per second.
	budgetTTL   = 10 * time.Second
	budgetRatio = 0.5
	budgetFloor = 10
	// breakerRate is the failure rate, in percent of the attempts in the
	// breaker's window, that opens it.
	breakerRate = 50
	// pushbackDelay is what the server's bulkhead asks shed callers to
	// wait.
	pushbackDelay = 50 * time.Millisecond
	// serverDefaultDeadline is what the server gives calls that come
	// without a deadline, as the plain client's do.
	serverDefaultDeadline = 2 * time.Second
)

// The two clients, as indexes of demo.clients and of result.client.
const (
	plainClient = iota
	resilientClient
	nClients
)

var clientNames = [nClients]string{"plain", "resilient"}

// demo is one run: the server, the two clients and what they recorded.
type demo struct {
	cfg    config
	out    io.Writer
	phases []phase
	scale  float64 // cfg.Duration / 30s, for the breaker's timings

	srv      *testservice.Server
	pipeline *server.Server
	clients  [nClients]*client
	// breakerOf is the resilient client's breaker; the pipeline creates it
	// on the first call.
	resilient *interceptors.Client
	obs       *clientObserver
	srvStats  *serverStats
	tel       *tracing

	// console serves the live page on consoleURL; nil without one.
	console    *console.Console
	consoleSrv *http.Server
	consoleURL string
	serving    sync.WaitGroup

	start   time.Time
	mu      sync.Mutex
	results []result // in the order the calls ended
}

// result is what one call did.
type result struct {
	client     int
	phase      int           // the phase the call started in
	start, end time.Duration // offsets from the start of the run
	code       codes.Code
	fallback   bool  // the fallback answered
	attempts   int32 // attempts sent to the server
	shed       int32 // attempts the server shed
}

func (r result) ok() bool { return r.code == codes.OK && !r.fallback }

// callStats travels in a call's context; the attempt counter below the
// pipeline and the fallback fill it in.
type callStats struct {
	attempts atomic.Int32
	shed     atomic.Int32
	fallback atomic.Bool
}

type callStatsKey struct{}

func statsOf(ctx context.Context) *callStats {
	st, _ := ctx.Value(callStatsKey{}).(*callStats)
	return st
}

// countAttempts is the innermost client interceptor of both clients: it
// sees every attempt that goes on the wire, and counts it and whether the
// server shed it.
func countAttempts(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if st := statsOf(ctx); st != nil {
		st.attempts.Add(1)
		if status.Code(err) == codes.ResourceExhausted {
			st.shed.Add(1)
		}
	}
	return err
}

// client sends the demo's calls over one connection and keeps the last
// good answers, which the resilient client's fallback serves.
type client struct {
	id    int
	conn  *grpc.ClientConn
	api   testingv1.TestServiceClient
	query atomic.Pointer[testingv1.QueryResponse]
	idem  atomic.Pointer[testingv1.IdempotentUnaryResponse]
}

// fallback answers a call the open circuit rejected with the last good
// answer of its method, and marks the call as answered by the fallback.
func (c *client) fallback(ctx context.Context, _ string, _, reply any, err error) error {
	var cached proto.Message
	switch reply.(type) {
	case *testingv1.QueryResponse:
		if q := c.query.Load(); q != nil {
			cached = q
		}
	case *testingv1.IdempotentUnaryResponse:
		if r := c.idem.Load(); r != nil {
			cached = r
		}
	}
	if cached == nil {
		return err
	}
	proto.Merge(reply.(proto.Message), cached)
	if st := statsOf(ctx); st != nil {
		st.fallback.Store(true)
	}
	return nil
}

func newDemo(ctx context.Context, cfg config, out io.Writer) (_ *demo, err error) {
	d := &demo{
		cfg:      cfg,
		out:      out,
		phases:   schedule(cfg.Profile, cfg.Duration),
		scale:    float64(cfg.Duration) / float64(30*time.Second),
		obs:      &clientObserver{},
		srvStats: &serverStats{},
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.close())
		}
	}()

	serverObs := server.Observer{OnEvent: d.srvStats.observe}
	var serverOpts []grpc.ServerOption
	if cfg.OTLP != "" {
		d.tel, err = startTracing(ctx, cfg.OTLP)
		if err != nil {
			return nil, err
		}
		d.obs.inner = d.tel.telemetry.ClientObserver()
		serverObs = bothObservers(serverObs, d.tel.telemetry.ServerObserver())
		serverOpts = append(serverOpts, grpc.StatsHandler(d.tel.serverHandler()))
	}

	d.pipeline, err = server.New(server.Config{
		Observer: serverObs,
		Deadline: server.DeadlineConfig{MinRemaining: 5 * time.Millisecond, Default: serverDefaultDeadline},
		Bulkhead: server.BulkheadConfig{
			Limit:         cfg.ServerLimit,
			PartitionBy:   server.PartitionByHeader,
			Header:        clientHeader,
			PushbackDelay: pushbackDelay,
		},
		Chaos: server.ChaosConfig{Seed: cfg.Seed},
	})
	if err != nil {
		return nil, err
	}
	serverOpts = append(serverOpts,
		grpc.ChainUnaryInterceptor(d.pipeline.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(d.pipeline.StreamServerInterceptor()))
	d.srv, err = testservice.Start(testservice.WithTCP("127.0.0.1:0"), testservice.WithServerOptions(serverOpts...))
	if err != nil {
		return nil, err
	}

	d.resilient, err = interceptors.NewClient(interceptors.Config{
		Default:  d.resilientPolicy(),
		Observer: d.obs.observer(),
		TargetBudget: func(string) retry.Budget {
			return retry.NewRatioBudget(budgetTTL, budgetFloor, budgetRatio)
		},
	})
	if err != nil {
		return nil, err
	}
	for id := range nClients {
		c := &client{id: id}
		// Both clients dial with gRPC's own retries off: the plain one
		// makes exactly one attempt per call, and the resilient one's
		// attempts are all the pipeline's.
		opts := []grpc.DialOption{grpc.WithDisableRetry()}
		if id == resilientClient {
			opts = append(opts, grpc.WithChainUnaryInterceptor(d.resilient.UnaryClientInterceptor(), countAttempts))
		} else {
			opts = append(opts, grpc.WithChainUnaryInterceptor(countAttempts))
		}
		c.conn, err = d.srv.Dial(opts...)
		if err != nil {
			return nil, err
		}
		c.api = testingv1.NewTestServiceClient(c.conn)
		d.clients[id] = c
	}
	if cfg.ConsoleAddr != "" {
		if err := d.startConsole(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// startConsole serves the live console of the resilient client and the
// server on cfg.ConsoleAddr, or on a free port when the default one is
// taken.
func (d *demo) startConsole() error {
	cc := console.Config{Title: "grpc-resilience demo"}
	if d.cfg.OTLP != "" {
		cc.TraceURL = d.cfg.TraceURL
	}
	var err error
	d.console, err = console.New(cc)
	if err != nil {
		return err
	}
	d.console.AddClient("resilient client", d.resilient)
	d.console.AddServer("server", d.pipeline)
	lis, err := net.Listen("tcp", d.cfg.ConsoleAddr)
	if err != nil && d.cfg.ConsoleAddr == defaultConsoleAddr {
		lis, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	d.consoleURL = "http://" + lis.Addr().String() + "/"
	d.consoleSrv = &http.Server{Handler: d.console, ReadHeaderTimeout: 5 * time.Second}
	d.serving.Go(func() { d.consoleSrv.Serve(lis) })
	return nil
}

// resilientPolicy is the resilient client's policy, for every method.
func (d *demo) resilientPolicy() interceptors.Policy {
	// A shed call with pushback is the server managing its load, not a
	// failure of the server: the retry already waits as asked, and
	// opening the circuit would turn a burst into an outage.
	table := classify.Default().With(codes.ResourceExhausted, classify.Rule{
		Retry: classify.Default().Rule(codes.ResourceExhausted).Retry, Breaker: classify.BreakerIgnore,
	})
	return interceptors.Policy{
		Retry: &interceptors.RetryPolicy{
			MaxAttempts:    maxAttempts,
			Backoff:        interceptors.Backoff{Initial: backoffBase, Max: backoffCap}, // exponential, doubling
			AttemptTimeout: attemptTimeout,
		},
		Breaker: &interceptors.BreakerPolicy{
			FailureRateThreshold: breakerRate,
			WindowType:           breaker.TimeWindow,
			WindowPeriod:         d.breakerWindow(),
			MinimumCalls:         20,
			OpenDuration:         d.breakerTimeout(),
			SuccessThreshold:     2,
			Scope:                interceptors.ScopeService,
			Table:                &table,
		},
		DefaultTimeout: defaultTimeout,
		Fallback: &interceptors.FallbackPolicy{
			Func: d.fallback,
			If:   func(err error) bool { return errors.Is(err, resilience.ErrCircuitOpen) },
		},
	}
}

// fallback is the resilient client's fallback; the client is known only
// once dialled, so it is looked up per call.
func (d *demo) fallback(ctx context.Context, method string, req, reply any, err error) error {
	return d.clients[resilientClient].fallback(ctx, method, req, reply, err)
}

// breakerTimeout is how long the breaker stays open before it lets probes
// through: 500ms at the default duration, scaled with it, at least 100ms.
func (d *demo) breakerTimeout() time.Duration {
	return max(time.Duration(float64(500*time.Millisecond)*d.scale), 100*time.Millisecond)
}

// breakerWindow is the period of the breaker's failure-rate window: 2s
// at the default duration, scaled with it, at least 500ms.
func (d *demo) breakerWindow() time.Duration {
	return max(time.Duration(float64(2*time.Second)*d.scale), 500*time.Millisecond)
}

// breakerState is the resilient client's breaker state now.
func (d *demo) breakerState() string {
	c := d.clients[resilientClient]
	if b := d.resilient.Breaker(c.conn.Target(), testingv1.TestService_Query_FullMethodName); b != nil {
		return b.State().String()
	}
	return "none"
}

// close releases everything newDemo created.
func (d *demo) close() error {
	if d.console != nil {
		// Closing the console first ends its event streams, so that the
		// HTTP server has no long request left.
		d.console.Close()
	}
	if d.consoleSrv != nil {
		d.consoleSrv.Close()
		d.serving.Wait()
	}
	for _, c := range d.clients {
		if c != nil && c.conn != nil {
			c.conn.Close()
		}
	}
	if d.srv != nil {
		d.srv.Stop()
	}
	if d.tel != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return d.tel.shutdown(ctx)
	}
	return nil
}

// intro says what the demo does.
func (d *demo) intro() {
	var sched []string
	for _, p := range d.phases {
		sched = append(sched, fmt.Sprintf("%s %s (%s)", p.kind, fmtSeconds(p.end-p.start), p.kind.describe(d.cfg)))
	}
	fmt.Fprintf(d.out, "A gRPC server on %s (bulkhead of %d calls per client with %v pushback, deadline checks, fault injection)\n",
		d.srv.Target(), d.cfg.ServerLimit, pushbackDelay)
	fmt.Fprintf(d.out, "gets the same %d calls/s of Query and IdempotentUnary from a plain client and from a resilient one\n", d.cfg.Rate)
	fmt.Fprintf(d.out, "(%d attempts with backoff and pushback, %.0f%% retry budget, circuit breaker with cached fallback, %v default timeout).\n",
		maxAttempts, budgetRatio*100, defaultTimeout)
	fmt.Fprintf(d.out, "Schedule, profile %s: %s.\n", d.cfg.Profile, strings.Join(sched, ", "))
	if d.consoleURL != "" {
		fmt.Fprintf(d.out, "Live console: %s\n", d.consoleURL)
	}
	fmt.Fprintln(d.out)
}

// request is one call of the demo's traffic; both clients send each one.
type request struct {
	n     int
	phase int
}

// drive plays the schedule: it switches the fault injector at each phase,
// starts cfg.Rate calls per second on both clients (and the bursts of the
// overload phase), prints a live line each second, and returns once every
// call ended. It fails only if the fault injector refuses a schedule.
func (d *demo) drive(ctx context.Context) error {
	var wg sync.WaitGroup
	d.start = time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()

	// n numbers the requests; steady counts those of the steady rate.
	cur, n, steady, nextBurst, reported, lastLine := -1, 0, 0, time.Duration(0), 0, time.Duration(0)
	d.printLiveHeader()
	var err error
	for {
		elapsed := time.Since(d.start)
		if elapsed >= d.cfg.Duration || ctx.Err() != nil {
			break
		}
		if p := phaseAt(d.phases, elapsed); p != cur {
			cur = p
			if err = d.pipeline.Chaos().Set(d.phases[p].kind.faults()); err != nil {
				break
			}
			nextBurst = elapsed
		}
		for due := int(elapsed.Seconds() * float64(d.cfg.Rate)); steady < due; steady++ {
			d.send(ctx, &wg, request{n: n, phase: cur})
			n++
		}
		if d.phases[cur].kind == overload && elapsed >= nextBurst {
			for range d.cfg.Concurrency {
				d.send(ctx, &wg, request{n: n, phase: cur})
				n++
			}
			nextBurst += d.cfg.burstEvery()
		}
		// One line per second, even when this loop ran late.
		for elapsed-lastLine >= time.Second {
			lastLine += time.Second
			reported = d.printLive(reported, lastLine)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	wg.Wait()
	if end := min(time.Since(d.start), d.cfg.Duration); end > lastLine {
		d.printLive(reported, end)
	}
	return err
}

// send starts request r on both clients, in an order that alternates so
// that neither is always first.
func (d *demo) send(ctx context.Context, wg *sync.WaitGroup, r request) {
	for i := range nClients {
		c := d.clients[(i+r.n)%nClients]
		wg.Go(func() { d.call(ctx, c, r) })
	}
}

// call makes one call of r on c and records it, unless r.phase is
// negative (the traffic of -keep).
func (d *demo) call(ctx context.Context, c *client, r request) {
	st := &callStats{}
	ctx = context.WithValue(ctx, callStatsKey{}, st)
	ctx = metadata.AppendToOutgoingContext(ctx, clientHeader, clientNames[c.id])
	payload := []byte(fmt.Sprintf("request %d", r.n))
	start := time.Since(d.start)
	var err error
	// Even requests read with Query, odd ones with IdempotentUnary: both
	// are idempotent, so retrying them is legitimate.
	if r.n%2 == 0 {
		var resp *testingv1.QueryResponse
		resp, err = c.api.Query(ctx, &testingv1.QueryRequest{Payload: payload})
		if err == nil && !st.fallback.Load() {
			c.query.Store(resp)
		}
	} else {
		var resp *testingv1.IdempotentUnaryResponse
		resp, err = c.api.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Payload: payload})
		if err == nil && !st.fallback.Load() {
			c.idem.Store(resp)
		}
	}
	res := result{
		client:   c.id,
		phase:    r.phase,
		start:    start,
		end:      time.Since(d.start),
		code:     status.Code(err),
		fallback: st.fallback.Load(),
		attempts: st.attempts.Load(),
		shed:     st.shed.Load(),
	}
	if r.phase < 0 {
		return
	}
	d.mu.Lock()
	d.results = append(d.results, res)
	d.mu.Unlock()
}

// keep plays the schedule again and again, with the same traffic, without
// recording it, until ctx is done: the console stays up and lively.
func (d *demo) keep(ctx context.Context) {
	fmt.Fprintf(d.out, "\nThe schedule plays again until interrupted (Ctrl-C); console: %s\n", d.consoleURL)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for cycle := 1; ctx.Err() == nil; cycle++ {
		start := time.Now()
		cur, sent, n, nextBurst := -1, 0, 0, time.Duration(0)
		for elapsed := time.Duration(0); elapsed < d.cfg.Duration && ctx.Err() == nil; elapsed = time.Since(start) {
			if p := phaseAt(d.phases, elapsed); p != cur {
				cur = p
				if err := d.pipeline.Chaos().Set(d.phases[p].kind.faults()); err != nil {
					return
				}
				nextBurst = elapsed
			}
			for due := int(elapsed.Seconds() * float64(d.cfg.Rate)); sent < due; sent++ {
				d.send(ctx, &wg, request{n: n, phase: -1})
				n++
			}
			if d.phases[cur].kind == overload && elapsed >= nextBurst {
				for range d.cfg.Concurrency {
					d.send(ctx, &wg, request{n: n, phase: -1})
					n++
				}
				nextBurst += d.cfg.burstEvery()
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() == nil {
			fmt.Fprintf(d.out, "cycle %d of the schedule done\n", cycle)
		}
	}
}

// since returns the results recorded from index i on.
func (d *demo) since(i int) []result {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.results[i:len(d.results):len(d.results)]
}

// clientObserver hears the resilient pipeline's events through the
// Observer its observer method returns: it counts breaker openings and
// rejections, remembers the trace of a call that was retried, and passes
// everything on to inner (the telemetry, or the zero Observer).
type clientObserver struct {
	inner       interceptors.Observer
	opened      atomic.Int64
	rejected    atomic.Int64
	denied      atomic.Int64
	pushback    atomic.Int64
	retriedOK   atomic.Pointer[string] // trace of a retried call whose retry succeeded
	retriedOnly atomic.Pointer[string] // trace of any retried attempt
}

// observer returns the Observer that feeds o; o.inner must be set before.
func (o *clientObserver) observer() interceptors.Observer {
	return interceptors.Observer{
		OnCallStart:    o.inner.OnCallStart,
		OnCallEnd:      o.inner.OnCallEnd,
		OnAttemptStart: o.attemptStart,
		OnAttemptEnd:   o.attemptEnd,
		OnEvent:        o.event,
	}
}

func (o *clientObserver) attemptStart(ctx context.Context, info interceptors.AttemptInfo) context.Context {
	if info.PushbackHonoured {
		o.pushback.Add(1)
	}
	if f := o.inner.OnAttemptStart; f != nil {
		return f(ctx, info)
	}
	return ctx
}

func (o *clientObserver) attemptEnd(ctx context.Context, info interceptors.AttemptInfo, err error) {
	if f := o.inner.OnAttemptEnd; f != nil {
		f(ctx, info, err)
	}
	if info.Attempt > 1 {
		if id, ok := traceID(ctx); ok {
			o.retriedOnly.CompareAndSwap(nil, &id)
			if err == nil {
				o.retriedOK.CompareAndSwap(nil, &id)
			}
		}
	}
}

func (o *clientObserver) event(ctx context.Context, e interceptors.Event) {
	switch e.Kind {
	case interceptors.EventBreakerStateChange:
		if e.StateChange.To == breaker.Open {
			o.opened.Add(1)
		}
	case interceptors.EventBreakerRejected:
		o.rejected.Add(1)
	case interceptors.EventBudgetDenied:
		o.denied.Add(1)
	}
	if f := o.inner.OnEvent; f != nil {
		f(ctx, e)
	}
}

// retriedTrace returns the trace id of a call that was retried, preferring
// one whose retry succeeded; "" when tracing is off or nothing was retried.
func (o *clientObserver) retriedTrace() string {
	if id := o.retriedOK.Load(); id != nil {
		return *id
	}
	if id := o.retriedOnly.Load(); id != nil {
		return *id
	}
	return ""
}

// serverStats counts what the server's interceptors did to calls.
type serverStats struct {
	shed, lateRejected, faults atomic.Int64
}

func (s *serverStats) observe(_ context.Context, e server.Event) {
	switch e.Kind {
	case server.EventShed:
		s.shed.Add(1)
	case server.EventDeadlineRejected:
		s.lateRejected.Add(1)
	case server.EventFaultError:
		s.faults.Add(1)
	}
}

// bothObservers returns an observer that tells a, then b, of every event.
func bothObservers(a, b server.Observer) server.Observer {
	return server.Observer{OnEvent: func(ctx context.Context, e server.Event) {
		a.OnEvent(ctx, e)
		b.OnEvent(ctx, e)
	}}
}
