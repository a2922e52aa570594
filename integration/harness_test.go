package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/retry"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// deadlineSlack is how long after its deadline a call may return: the
// scheduling delay of a loaded 2-core machine under -race, not a grace
// period of the pipeline, which must stop waiting at the deadline itself.
const deadlineSlack = 250 * time.Millisecond

// callIDHeader carries the call id in the metadata of every attempt, so
// that the server-side recorder knows the calls the chaos interceptor or the
// bulkhead fail before the handler reads the request.
const callIDHeader = "x-call-id"

// neverRetried are the codes the default table never retries, whatever the
// method and the server say: after an attempt ends with one of them, no
// attempt of the same call may start.
var neverRetried = map[codes.Code]bool{
	codes.Canceled: true, codes.Unknown: true, codes.InvalidArgument: true,
	codes.NotFound: true, codes.AlreadyExists: true, codes.PermissionDenied: true,
	codes.FailedPrecondition: true, codes.Aborted: true, codes.OutOfRange: true,
	codes.Unimplemented: true, codes.Internal: true, codes.DataLoss: true,
	codes.Unauthenticated: true,
}

// serverFinal are the codes after which the server must see no further
// attempt of the call when the transport loses nothing (no proxy, no
// restart). CANCELLED is left out: a server sees it when the client
// abandons an attempt itself (per-attempt timeout, hedging), which may be
// followed by a retry.
func serverFinal(c codes.Code) bool { return c != codes.Canceled && neverRetried[c] }

// leakCheck fails t when goroutines started during the test outlive it,
// after every cleanup registered later has run.
func leakCheck(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// invariants checks the promises of RELIABILITY.md for one scenario and
// keeps its figures. It is safe for concurrent use.
type invariants struct {
	t    testing.TB
	name string

	calls, streams, ok  atomic.Int64
	messages            atomic.Int64
	firstAttempts       atomic.Int64 // attempts numbered 1, as the client observer saw them
	retries, hedges     atomic.Int64
	checks, violations  atomic.Int64
	maxOvershoot        atomic.Int64 // nanoseconds past the deadline, the largest seen
	dups, lost          atomic.Int64
	restarts, hangs     atomic.Int64
	started             time.Time
	budgetTTL           time.Duration
	budgetMin           int
	budgetRatio         float64
	serverStrict        bool // check the server's attempt log for retries after final codes
	bulkheadLimit       int
	ignoreBudgetFigures bool
	maxLag              atomic.Int64 // how late a deadline's timer ran, the worst seen
	maxOwnOvershoot     atomic.Int64 // overshoot minus that lateness, the worst seen
}

func (inv *invariants) check() { inv.checks.Add(1) }

func (inv *invariants) fail(format string, args ...any) {
	inv.violations.Add(1)
	inv.t.Errorf("%s: "+format, append([]any{inv.name}, args...)...)
}

// deadline checks that a call that had a deadline returned by it, plus the
// slack, and keeps the largest overshoot. timerAt is when a timer set for
// the deadline got to run its function (zero if it had not when the call
// returned): on a shared 2-core machine under -race, other processes, the
// race detector and a run queue of busy goroutines can hold every goroutine
// of the test, the pipeline's own timers included, for a long time past
// the moment they are due. That lateness is the machine's; the pipeline is
// judged from the moment a goroutine could run after the deadline.
func (inv *invariants) deadline(ctx context.Context, start, end, timerAt time.Time, what string) {
	dl, ok := ctx.Deadline()
	if !ok {
		return
	}
	inv.check()
	// A deadline that had passed when the call started bounds nothing
	// but the call's start.
	if dl.Before(start) {
		dl = start
	}
	over := end.Sub(dl)
	var lag time.Duration
	switch {
	case timerAt.IsZero() && over > 0:
		lag = over // the deadline's timer had not run yet either
	case !timerAt.IsZero():
		lag = max(timerAt.Sub(dl), 0)
	}
	storeMax(&inv.maxOvershoot, over)
	storeMax(&inv.maxLag, lag)
	own := over - lag
	storeMax(&inv.maxOwnOvershoot, own)
	if own > deadlineSlack {
		inv.fail("%s returned %v after its deadline, %v after the scheduler could run it (slack %v)", what, over, own, deadlineSlack)
	}
}

// storeMax raises *m to d if d is larger.
func storeMax(m *atomic.Int64, d time.Duration) {
	for {
		cur := m.Load()
		if int64(d) <= cur || m.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// deadlineTimer records when a goroutine could first run after ctx's
// deadline; stop it when the call returns.
type deadlineTimer struct {
	t  *time.Timer
	at atomic.Int64 // UnixNano; 0 until the timer ran
}

func startDeadlineTimer(ctx context.Context) *deadlineTimer {
	dt := &deadlineTimer{}
	if dl, ok := ctx.Deadline(); ok {
		dt.t = time.AfterFunc(time.Until(dl), func() { dt.at.Store(time.Now().UnixNano()) })
	}
	return dt
}

// stop stops the timer and returns when it ran, or the zero time.
func (dt *deadlineTimer) stop() time.Time {
	if dt.t != nil {
		dt.t.Stop()
	}
	if at := dt.at.Load(); at != 0 {
		return time.Unix(0, at)
	}
	return time.Time{}
}

// callTrack is one logical call as the client observer sees it.
type callTrack struct {
	id string

	mu      sync.Mutex
	retries bool // the call retries (rather than hedging or making one attempt)
	final   codes.Code
	ended   bool // an attempt ended with a code in neverRetried
}

type trackKey struct{}

// clientObserver checks, from the client's own view, that no attempt starts
// after an attempt of the same call ended with a code that is never retried,
// and counts attempts for the budget check. Its observer method returns the
// interceptors.Observer that feeds it.
type clientObserver struct {
	inv     *invariants
	onEvent func(ctx context.Context, e interceptors.Event) // nil: none
}

func (o *clientObserver) observer() interceptors.Observer {
	return interceptors.Observer{
		OnCallStart:    o.CallStart,
		OnAttemptStart: o.AttemptStart,
		OnAttemptEnd:   o.AttemptEnd,
		OnEvent:        o.onEvent,
	}
}

func (o *clientObserver) CallStart(ctx context.Context, info interceptors.CallInfo) context.Context {
	if tr, ok := ctx.Value(trackKey{}).(*callTrack); ok {
		tr.mu.Lock()
		tr.retries = info.Pattern == interceptors.PatternRetry
		tr.mu.Unlock()
	}
	return ctx
}

func (o *clientObserver) AttemptStart(ctx context.Context, info interceptors.AttemptInfo) context.Context {
	switch {
	case info.Hedge:
		o.inv.hedges.Add(1)
	case info.Attempt > 1:
		o.inv.retries.Add(1)
	default:
		o.inv.firstAttempts.Add(1)
	}
	if tr, ok := ctx.Value(trackKey{}).(*callTrack); ok && !info.Hedge {
		tr.mu.Lock()
		ended, final := tr.ended, tr.final
		tr.mu.Unlock()
		o.inv.check()
		if ended {
			o.inv.fail("call %s: attempt %d started after an attempt ended with %v, which is never retried", tr.id, info.Attempt, final)
		}
	}
	return ctx
}

func (o *clientObserver) AttemptEnd(ctx context.Context, info interceptors.AttemptInfo, err error) {
	tr, ok := ctx.Value(trackKey{}).(*callTrack)
	if !ok || info.Hedge {
		return
	}
	if c := status.Code(err); neverRetried[c] {
		tr.mu.Lock()
		if tr.retries {
			tr.ended, tr.final = true, c
		}
		tr.mu.Unlock()
	}
}

// serverRecorder is the outermost server interceptor: it sees every attempt
// that reaches the server, including those the bulkhead sheds and the chaos
// interceptor fails, with the code the client is sent.
type serverRecorder struct {
	keep bool            // keep the codes of every attempt per call id, for serverStrict
	skip map[string]bool // full methods whose attempts are not kept: hedged ones run concurrently

	attempts, errs atomic.Int64

	mu    sync.Mutex
	calls map[string][]serverAttempt
}

// serverAttempt is how one attempt ended on the server.
type serverAttempt struct {
	n    int // 1 + its grpc-previous-rpc-attempts header
	code codes.Code
}

func newServerRecorder(keep bool, skip map[string]bool) *serverRecorder {
	return &serverRecorder{keep: keep, skip: skip, calls: map[string][]serverAttempt{}}
}

// callOf returns the call id and the attempt number of an attempt.
func callOf(ctx context.Context) (id string, n int) {
	n = 1
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(callIDHeader); len(v) > 0 {
			id = v[0]
		}
		if v := md.Get(interceptors.PreviousAttemptsHeader); len(v) > 0 {
			if p, err := strconv.Atoi(v[0]); err == nil {
				n = p + 1
			}
		}
	}
	return id, n
}

func (r *serverRecorder) record(ctx context.Context, method string, err error) {
	r.attempts.Add(1)
	c := status.Code(err)
	if c != codes.OK && c != codes.Canceled && c != codes.DeadlineExceeded {
		r.errs.Add(1)
	}
	if !r.keep || r.skip[method] {
		return
	}
	id, n := callOf(ctx)
	r.mu.Lock()
	r.calls[id] = append(r.calls[id], serverAttempt{n: n, code: c})
	r.mu.Unlock()
}

func (r *serverRecorder) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	r.record(ctx, info.FullMethod, err)
	return resp, err
}

func (r *serverRecorder) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := handler(srv, ss)
	r.record(ss.Context(), info.FullMethod, err)
	return err
}

// attemptsOf returns how the attempts of call id ended on the server, in
// the order they ended.
func (r *serverRecorder) attemptsOf(id string) []serverAttempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]serverAttempt(nil), r.calls[id]...)
}

// highWater sits between the server pipeline and the handler and keeps the
// most handlers that ran at once.
type highWater struct {
	mu      sync.Mutex
	cur     int
	max     int
	changed chan struct{}
}

func newHighWater() *highWater { return &highWater{changed: make(chan struct{})} }

func (h *highWater) enter() {
	h.mu.Lock()
	h.cur++
	h.max = max(h.max, h.cur)
	h.mu.Unlock()
}

func (h *highWater) exit() {
	h.mu.Lock()
	h.cur--
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
}

// peak returns the most handlers seen running at once.
func (h *highWater) peak() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.max
}

// waitIdle waits until no handler runs, or ctx is done.
func (h *highWater) waitIdle(ctx context.Context) error {
	for {
		h.mu.Lock()
		cur, changed := h.cur, h.changed
		h.mu.Unlock()
		if cur == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%d handlers still running: %w", cur, ctx.Err())
		}
	}
}

func (h *highWater) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	h.enter()
	defer h.exit()
	return handler(ctx, req)
}

func (h *highWater) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	h.enter()
	defer h.exit()
	return handler(srv, ss)
}

// serverEvents counts what the server pipeline did.
type serverEvents struct {
	shed, faultErrors, faultLatency, faultAborts, deadlineRejected atomic.Int64
}

func (s *serverEvents) observe(_ context.Context, e server.Event) {
	switch e.Kind {
	case server.EventShed:
		s.shed.Add(1)
	case server.EventFaultError:
		s.faultErrors.Add(1)
	case server.EventFaultLatency:
		s.faultLatency.Add(1)
	case server.EventFaultAbort:
		s.faultAborts.Add(1)
	case server.EventDeadlineRejected:
		s.deadlineRejected.Add(1)
	}
}

// envOptions describes a scenario's server and client.
type envOptions struct {
	// server is the server pipeline's configuration; its Observer is set
	// by newEnv.
	server server.Config
	// policy is the client's default policy; retry policies get the
	// scenario's budget unless they have one.
	policy interceptors.Policy
	// methodPolicies are the client's per-method policies.
	methodPolicies map[string]interceptors.Policy
	// proxy, when set, puts a chaos proxy with these faults between the
	// client and the server.
	proxy *proxyFaults
	// seed seeds the proxy.
	seed uint64
	// serverStrict checks the server's attempt log: no attempt after a
	// final code. Only for scenarios whose transport loses nothing.
	serverStrict bool
	// front are unary server interceptors run after the recorder and
	// before the pipeline, to answer some calls in ways the test service
	// cannot.
	front []grpc.UnaryServerInterceptor
	// onEvent, when set, hears the client pipeline's events.
	onEvent func(ctx context.Context, e interceptors.Event)
}

// Budget of every scenario unless it sets its own: retries may add 30% to
// the calls of the last 10s, plus 10 per second.
const (
	scenarioBudgetTTL   = 10 * time.Second
	scenarioBudgetMin   = 10
	scenarioBudgetRatio = 0.3
)

// bulkheadBound is the most handlers a server bulkhead lets run at once:
// its limit, times the partitions (the cap, plus the overflow partition)
// when it is partitioned.
func bulkheadBound(c server.BulkheadConfig) int {
	if c.PartitionBy == server.PartitionNone {
		return c.Limit
	}
	parts := c.MaxPartitions
	if parts == 0 {
		parts = server.DefaultMaxPartitions
	}
	return c.Limit * (parts + 1)
}

// hedgedMethods returns the methods o's client hedges.
func hedgedMethods(o envOptions) map[string]bool {
	m := map[string]bool{}
	for method, p := range o.methodPolicies {
		if p.Hedging != nil {
			m[method] = true
		}
	}
	return m
}

// env is one scenario: a testservice server over loopback TCP behind the
// server pipeline, optionally a chaos proxy, and a client through the
// resilience pipeline.
type env struct {
	t      *testing.T
	srv    *testservice.Server
	svc    *testservice.Service
	pipe   *server.Server
	rec    *serverRecorder
	hw     *highWater
	events *serverEvents
	proxy  *chaosProxy
	client *interceptors.Client
	conn   *grpc.ClientConn
	tc     testingv1.TestServiceClient
	inv    *invariants
	nextID atomic.Int64
}

// fastConnect makes reconnection quick: the default backoff after a failed
// connection attempt starts at 1s, which would turn each restart or reset
// into a second of failures.
var fastConnect = grpc.WithConnectParams(grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 100 * time.Millisecond},
	MinConnectTimeout: time.Second,
})

func newEnv(t *testing.T, name string, o envOptions) *env {
	t.Helper()
	inv := &invariants{t: t, name: name, started: time.Now(), serverStrict: o.serverStrict,
		budgetTTL: scenarioBudgetTTL, budgetMin: scenarioBudgetMin, budgetRatio: scenarioBudgetRatio,
		bulkheadLimit: bulkheadBound(o.server.Bulkhead)}
	e := &env{t: t, rec: newServerRecorder(o.serverStrict, hedgedMethods(o)), hw: newHighWater(), events: &serverEvents{}, inv: inv}
	o.server.Observer = server.Observer{OnEvent: e.events.observe}
	pipe, err := server.New(o.server)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	e.pipe = pipe
	unary := append(append([]grpc.UnaryServerInterceptor{e.rec.unary}, o.front...), pipe.UnaryServerInterceptor(), e.hw.unary)
	e.srv = testservice.StartTB(t, testservice.WithTCP(""), testservice.WithServerOptions(
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(e.rec.stream, pipe.StreamServerInterceptor(), e.hw.stream),
	))
	e.svc = e.srv.Service()

	// Retries get the scenario's budget, which verify checks; a scenario
	// that brings its own budget checks it itself.
	if o.policy.Retry != nil && o.policy.Retry.Budget == nil {
		rp := *o.policy.Retry
		rp.Budget = retry.NewRatioBudget(scenarioBudgetTTL, scenarioBudgetMin, scenarioBudgetRatio)
		o.policy.Retry = &rp
	} else {
		inv.ignoreBudgetFigures = true
	}
	obs := &clientObserver{inv: inv, onEvent: o.onEvent}
	e.client, err = interceptors.NewClient(interceptors.Config{
		Default:  o.policy,
		Methods:  o.methodPolicies,
		Observer: obs.observer(),
	})
	if err != nil {
		t.Fatalf("interceptors.NewClient: %v", err)
	}
	target := e.srv.Target()
	if o.proxy != nil {
		e.proxy = startProxy(t, target, o.seed, *o.proxy)
		target = e.proxy.Addr()
	}
	e.conn, err = grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(),
		fastConnect,
		grpc.WithChainUnaryInterceptor(e.client.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(e.client.StreamClientInterceptor()),
	)
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = e.conn.Close() })
	e.tc = testingv1.NewTestServiceClient(e.conn)
	return e
}

// kind is the shape and method of a call.
type kind uint8

const (
	kindUnary kind = iota
	kindIdempotent
	kindQuery
	kindServerStream
	kindClientStream
	kindBidi
	numKinds
)

func (k kind) String() string {
	return [...]string{"Unary", "IdempotentUnary", "Query", "ServerStream", "ClientStream", "BidiStream"}[k]
}

// call is one call a scenario makes.
type call struct {
	kind     kind
	behavior *testingv1.Behavior // CallId is set by do
	timeout  time.Duration       // zero: no deadline of the caller's own
	messages int                 // messages the client sends on client and bidi streams
	opts     []grpc.CallOption
}

// result is how a call ended.
type result struct {
	id       string
	err      error
	reply    *testingv1.Reply // unary calls and client streams
	received int              // stream messages handed to the application
	elapsed  time.Duration
}

// newID returns a call id unique in the scenario.
func (e *env) newID() string { return "c" + strconv.FormatInt(e.nextID.Add(1), 10) }

// do makes c and checks the invariants that concern one call: the
// deadline, the call id of every reply, and for streams that no message is
// duplicated, reordered or lost.
func (e *env) do(ctx context.Context, c call) result {
	if c.behavior == nil {
		c.behavior = &testingv1.Behavior{}
	}
	id := c.behavior.GetCallId()
	if id == "" {
		id = e.newID()
		c.behavior.CallId = id
	}
	ctx = context.WithValue(ctx, trackKey{}, &callTrack{id: id})
	ctx = metadata.AppendToOutgoingContext(ctx, callIDHeader, id)
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	start := time.Now()
	dt := startDeadlineTimer(ctx)
	r := result{id: id}
	switch c.kind {
	case kindUnary, kindIdempotent, kindQuery:
		r.reply, r.err = e.unary(ctx, c)
	case kindServerStream:
		r.received, r.err = e.serverStream(ctx, c)
	case kindClientStream:
		r.reply, r.err = e.clientStream(ctx, c)
	case kindBidi:
		r.received, r.err = e.bidi(ctx, c)
	}
	end := time.Now()
	timerAt := dt.stop()
	r.elapsed = end.Sub(start)
	e.inv.calls.Add(1)
	if c.kind >= kindServerStream {
		e.inv.streams.Add(1)
	}
	if r.err == nil {
		e.inv.ok.Add(1)
	}
	e.inv.deadline(ctx, start, end, timerAt, fmt.Sprintf("%v call %s", c.kind, id))
	if r.err != nil {
		if _, ok := status.FromError(r.err); !ok {
			e.inv.fail("%v call %s: error %v is not a gRPC status", c.kind, id, r.err)
		}
	}
	if r.reply != nil {
		e.inv.check()
		if r.reply.GetCallId() != id {
			e.inv.fail("call %s got the reply of call %q", id, r.reply.GetCallId())
		}
	}
	return r
}

func (e *env) unary(ctx context.Context, c call) (*testingv1.Reply, error) {
	payload := []byte(c.behavior.GetCallId())
	switch c.kind {
	case kindIdempotent:
		resp, err := e.tc.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: c.behavior, Payload: payload}, c.opts...)
		return resp.GetReply(), err
	case kindQuery:
		resp, err := e.tc.Query(ctx, &testingv1.QueryRequest{Behavior: c.behavior, Payload: payload}, c.opts...)
		return resp.GetReply(), err
	default:
		resp, err := e.tc.Unary(ctx, &testingv1.UnaryRequest{Behavior: c.behavior, Payload: payload}, c.opts...)
		return resp.GetReply(), err
	}
}

// seqCheck checks the messages of one stream as the application receives
// them: each carries the stream's call id, the next sequence number, and
// the same server attempt as the first (the application never sees two
// attempts).
type seqCheck struct {
	inv     *invariants
	id      string
	next    int32
	attempt int32
}

func (s *seqCheck) see(r *testingv1.Reply) {
	s.inv.check()
	s.inv.messages.Add(1)
	if s.next == 0 {
		s.attempt = r.GetAttempt()
	}
	switch {
	case r.GetCallId() != s.id:
		s.inv.fail("stream %s got a message of call %q", s.id, r.GetCallId())
	case r.GetSequence() < s.next:
		s.inv.dups.Add(1)
		s.inv.fail("stream %s: duplicate message %d after %d", s.id, r.GetSequence(), s.next-1)
	case r.GetSequence() > s.next:
		s.inv.lost.Add(1)
		s.inv.fail("stream %s: message %d arrived where %d was due", s.id, r.GetSequence(), s.next)
	case r.GetAttempt() != s.attempt:
		s.inv.dups.Add(1)
		s.inv.fail("stream %s: message %d of attempt %d after messages of attempt %d", s.id, r.GetSequence(), r.GetAttempt(), s.attempt)
	}
	s.next++
}

func (e *env) serverStream(ctx context.Context, c call) (int, error) {
	sc := &seqCheck{inv: e.inv, id: c.behavior.GetCallId()}
	st, err := e.tc.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: c.behavior, Payload: []byte("p")}, c.opts...)
	if err != nil {
		return 0, err
	}
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return int(sc.next), err
		}
		sc.see(m.GetReply())
	}
	e.inv.check()
	if want := c.behavior.GetStreamMessages(); sc.next != want {
		e.inv.lost.Add(1)
		e.inv.fail("stream %s ended well after %d of %d messages", sc.id, sc.next, want)
	}
	return int(sc.next), nil
}

func (e *env) clientStream(ctx context.Context, c call) (*testingv1.Reply, error) {
	st, err := e.tc.ClientStream(ctx, c.opts...)
	if err != nil {
		return nil, err
	}
	for i := range c.messages {
		req := &testingv1.ClientStreamRequest{Payload: []byte(strconv.Itoa(i))}
		if i == 0 {
			req.Behavior = c.behavior
		}
		if err := st.Send(req); err != nil {
			break // the status comes from CloseAndRecv
		}
	}
	resp, err := st.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	e.inv.check()
	got := resp.GetPayloads()
	ok := len(got) == c.messages
	for i := 0; ok && i < len(got); i++ {
		ok = string(got[i]) == strconv.Itoa(i)
	}
	if !ok {
		e.inv.lost.Add(1)
		e.inv.fail("client stream %s: the server received %q, want 0..%d once each in order", c.behavior.GetCallId(), got, c.messages-1)
	}
	return resp.GetReply(), nil
}

func (e *env) bidi(ctx context.Context, c call) (int, error) {
	sc := &seqCheck{inv: e.inv, id: c.behavior.GetCallId()}
	st, err := e.tc.BidiStream(ctx, c.opts...)
	if err != nil {
		return 0, err
	}
	for i := range c.messages {
		req := &testingv1.BidiStreamRequest{Payload: []byte(strconv.Itoa(i))}
		if i == 0 {
			req.Behavior = c.behavior
		}
		if err := st.Send(req); err != nil {
			break // the status comes from Recv
		}
		m, err := st.Recv()
		if err != nil {
			return int(sc.next), err
		}
		sc.see(m.GetReply())
		if string(m.GetReply().GetPayload()) != strconv.Itoa(i) {
			e.inv.fail("bidi stream %s: echo %q for message %d", sc.id, m.GetReply().GetPayload(), i)
		}
	}
	if err := st.CloseSend(); err != nil {
		return int(sc.next), err
	}
	_, err = st.Recv()
	if errors.Is(err, io.EOF) {
		e.inv.check()
		if int(sc.next) != c.messages {
			e.inv.lost.Add(1)
			e.inv.fail("bidi stream %s ended well after %d of %d echoes", sc.id, sc.next, c.messages)
		}
		return int(sc.next), nil
	}
	if err == nil {
		err = status.Error(codes.Internal, "bidi stream: a message after CloseSend with nothing left to echo")
		e.inv.fail("%v", err)
	}
	return int(sc.next), err
}

// verify checks the invariants that concern the whole scenario and logs
// its figures. Call it once every call has returned.
func (e *env) verify() {
	t, inv := e.t, e.inv
	t.Helper()
	// Bulkhead: never more handlers at once than the limit.
	if limit := inv.bulkheadLimit; limit > 0 {
		inv.check()
		if peak := e.hw.peak(); peak > limit {
			inv.fail("%d handlers ran at once behind a bulkhead of %d", peak, limit)
		}
	}
	// Budget: retries within what the ratio budget grants over the run.
	if !inv.ignoreBudgetFigures {
		inv.check()
		if got, bound := inv.retries.Load(), inv.retryBound(); got > bound {
			inv.fail("%d retries for %d calls in %v, the budget allows %d", got, inv.firstAttempts.Load(), time.Since(inv.started), bound)
		}
	}
	// Server side: no attempt after one that ended with a final code.
	// Attempts are numbered by their grpc-previous-rpc-attempts header, as
	// an attempt the client abandoned (per-attempt timeout) may end on the
	// server after the next one.
	if inv.serverStrict {
		e.rec.mu.Lock()
		for id, as := range e.rec.calls {
			first := 0 // the first attempt that ended with a final code
			for _, a := range as {
				if serverFinal(a.code) && (first == 0 || a.n < first) {
					first = a.n
				}
			}
			for _, a := range as {
				inv.check()
				if first > 0 && a.n > first {
					inv.fail("call %s: the server saw attempt %d after attempt %d ended with a code that is never retried (attempts %v)", id, a.n, first, as)
					break
				}
			}
		}
		e.rec.mu.Unlock()
	}
	e.logSummary()
}

// retryBound is the most retries the scenario's RatioBudget can grant:
// per window of its TTL, the floor, plus the ratio of the calls (each call
// deposits at most once, when its first attempt ends), plus one for the
// rounding of a retry's cost.
func (inv *invariants) retryBound() int64 {
	windows := int64(time.Since(inv.started)/inv.budgetTTL) + 1
	floor := windows * int64(inv.budgetMin) * int64(inv.budgetTTL/time.Second)
	return floor + int64(math.Ceil(inv.budgetRatio*float64(inv.calls.Load()))) + 1
}

// faults returns the faults injected into the scenario: server errors
// (Behavior and chaos), injected latency and aborts, sheds, proxy faults,
// restarts and hanging handlers.
func (e *env) faults() int64 {
	n := e.rec.errs.Load() + e.events.faultLatency.Load() + e.events.faultAborts.Load() + e.inv.restarts.Load() + e.inv.hangs.Load()
	if e.proxy != nil {
		n += e.proxy.Stats().faults()
	}
	return n
}

func (e *env) logSummary() {
	inv := e.inv
	line := fmt.Sprintf("reliability %s: calls=%d streams=%d ok=%d server_attempts=%d retries=%d hedges=%d faults=%d checks=%d violations=%d max_overshoot=%v max_timer_lag=%v max_own_overshoot=%v dups=%d lost=%d bulkhead_peak=%d/%d",
		inv.name, inv.calls.Load(), inv.streams.Load(), inv.ok.Load(), e.rec.attempts.Load(), inv.retries.Load(), inv.hedges.Load(),
		e.faults(), inv.checks.Load(), inv.violations.Load(), time.Duration(inv.maxOvershoot.Load()).Round(time.Microsecond),
		time.Duration(inv.maxLag.Load()).Round(time.Microsecond), time.Duration(inv.maxOwnOvershoot.Load()).Round(time.Microsecond), inv.dups.Load(), inv.lost.Load(), e.hw.peak(), inv.bulkheadLimit)
	if e.proxy != nil {
		s := e.proxy.Stats()
		line += fmt.Sprintf(" proxy(conns=%d refused=%d resets=%d stalls=%d slows=%d)", s.Conns, s.Refused, s.Resets, s.Stalls, s.Slows)
	}
	e.t.Log(line)
}
