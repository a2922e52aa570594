package integration

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/retry"
)

// chaosSeed seeds every random choice of the chaos scenarios: the calls,
// the proxy's faults, the chaos interceptor and the restart schedule.
// Goroutine interleavings still vary from run to run.
const chaosSeed = 20260611

// scenarioPolicy is the client policy of the chaos scenarios: up to 4
// attempts with short exponential backoff and full jitter, a per-attempt
// timeout so that hanging idempotent calls are retried, and the scenario's
// ratio budget (set by newEnv).
func scenarioPolicy() interceptors.Policy {
	return interceptors.Policy{Retry: &interceptors.RetryPolicy{
		MaxAttempts:    4,
		Backoff:        interceptors.Backoff{Initial: 2 * time.Millisecond, Max: 40 * time.Millisecond},
		AttemptTimeout: 150 * time.Millisecond,
	}}
}

// hedgedQuery hedges Query, which is NO_SIDE_EFFECTS: two extra attempts
// 20ms apart, going on after UNAVAILABLE.
func hedgedQuery() map[string]interceptors.Policy {
	return map[string]interceptors.Policy{testingv1.TestService_Query_FullMethodName: {Hedging: &interceptors.HedgingPolicy{
		MaxExtraAttempts: 2, Delay: 20 * time.Millisecond, NonFatalCodes: []codes.Code{codes.Unavailable},
	}}}
}

// scenarioServer is the server pipeline of the chaos scenarios: a bulkhead
// of 8 calls that sheds with a 2ms pushback.
func scenarioServer() server.Config {
	return server.Config{Bulkhead: server.BulkheadConfig{Limit: 8, PushbackDelay: 2 * time.Millisecond}}
}

// mix describes the random calls of a scenario.
type mix struct {
	// failRate is the share of calls whose Behavior fails some attempts,
	// with a code drawn from codes.
	failRate float64
	codes    []codes.Code
	// hangRate is the share of calls whose handler sleeps an hour (every
	// attempt, or the first only), bounded by the caller's deadline.
	hangRate float64
	// timeouts bound the callers' deadlines, drawn uniformly.
	minTimeout, maxTimeout time.Duration
	// maxMessages bounds the messages of streams.
	maxMessages int
	// think is the most a caller pauses between calls, drawn uniformly:
	// zero makes a closed loop that saturates the CPU.
	think time.Duration
}

// allCodes are the error codes, OK excluded.
var allCodes = func() []codes.Code {
	var cs []codes.Code
	for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
		cs = append(cs, c)
	}
	return cs
}()

// transient are the codes that are retried.
var transient = []codes.Code{codes.Unavailable, codes.Unavailable, codes.ResourceExhausted}

// draw returns a random call.
func (m mix) draw(r *rand.Rand, inv *invariants) call {
	c := call{kind: kind(r.IntN(int(numKinds))), behavior: &testingv1.Behavior{}}
	c.timeout = m.minTimeout + time.Duration(r.Int64N(int64(m.maxTimeout-m.minTimeout)+1))
	b := c.behavior
	if r.Float64() < m.failRate {
		// -1 (every attempt) .. 3 attempts fail.
		b.FailAttempts = int32(r.IntN(5)) - 1
		if b.FailAttempts == 0 {
			b.FailAttempts = 1
		}
		code := m.codes[r.IntN(len(m.codes))]
		b.FailCode = uint32(code)
		b.FailAfterMessages = int32(r.IntN(3))
		if code == codes.ResourceExhausted && r.IntN(2) == 0 {
			b.PushbackMs = "3"
		}
	}
	switch {
	case r.Float64() < m.hangRate:
		inv.hangs.Add(1)
		b.Sleep = durationpb.New(time.Hour)
		b.SleepAttempts = int32(r.IntN(2))
	case r.IntN(4) == 0:
		b.Sleep = durationpb.New(time.Duration(r.IntN(20)) * time.Millisecond)
	}
	n := 1 + r.IntN(max(m.maxMessages, 1))
	b.StreamMessages = int32(n)
	c.messages = n
	return c
}

// run makes random calls from callers goroutines for d, each caller with
// its own seeded source, and calls check, if set, after each call.
func (e *env) run(ctx context.Context, callers int, seed uint64, d time.Duration, m mix, check func(call, result)) {
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for i := range callers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(i)))
			for time.Now().Before(deadline) && ctx.Err() == nil {
				c := m.draw(r, e.inv)
				res := e.do(ctx, c)
				if check != nil {
					check(c, res)
				}
				if m.think > 0 {
					pause := time.NewTimer(time.Duration(r.Int64N(int64(m.think))))
					select {
					case <-pause.C:
					case <-ctx.Done():
						pause.Stop()
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestChaosServerRestart kills the server (testservice Stop: connections
// closed, handlers cancelled) and restarts it on the same address while
// calls and streams are inside it, and then at random under load.
func TestChaosServerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	leakCheck(t)
	restart := func(t *testing.T, e *env) {
		t.Helper()
		e.srv.Stop()
		if err := e.srv.Restart(); err != nil {
			t.Fatalf("restart: %v", err)
		}
		e.inv.restarts.Add(1)
	}
	policy := interceptors.Policy{Retry: &interceptors.RetryPolicy{
		MaxAttempts: 10, Backoff: interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: 5 * time.Millisecond}, Jitter: interceptors.JitterNone,
	}}

	t.Run("mid-call", func(t *testing.T) {
		e := newEnv(t, "restart-mid-call", envOptions{policy: policy, server: scenarioServer(), serverStrict: true})
		id := e.newID()
		done := make(chan result, 1)
		go func() {
			done <- e.do(t.Context(), call{kind: kindUnary, timeout: 10 * time.Second, behavior: &testingv1.Behavior{
				CallId: id, Sleep: durationpb.New(time.Hour), SleepAttempts: 1,
			}})
		}()
		if err := e.svc.WaitAttempts(t.Context(), id, 1); err != nil {
			t.Fatal(err)
		}
		restart(t, e)
		res := <-done
		if res.err != nil {
			t.Fatalf("call across a restart: %v", res.err)
		}
		// The service outlives its servers, so it counts both attempts.
		if got := res.reply.GetAttempt(); got != 2 {
			t.Errorf("answered by attempt %d, want 2 (the one after the restart)", got)
		}
		e.verify()
	})

	t.Run("mid-server-stream-before-commit", func(t *testing.T) {
		e := newEnv(t, "restart-mid-stream-uncommitted", envOptions{policy: policy, server: scenarioServer(), serverStrict: true})
		id := e.newID()
		done := make(chan result, 1)
		go func() {
			done <- e.do(t.Context(), call{kind: kindServerStream, timeout: 10 * time.Second, behavior: &testingv1.Behavior{
				CallId: id, Sleep: durationpb.New(time.Hour), SleepAttempts: 1, StreamMessages: 5,
			}})
		}()
		if err := e.svc.WaitAttempts(t.Context(), id, 1); err != nil {
			t.Fatal(err)
		}
		restart(t, e)
		res := <-done
		if res.err != nil || res.received != 5 {
			t.Fatalf("stream across a restart: %d messages, %v; want 5, nil", res.received, res.err)
		}
		e.verify()
	})

	t.Run("mid-client-stream-before-commit", func(t *testing.T) {
		// The server fails while the client is still sending: the stream
		// is not committed (no response yet), so a new attempt gets every
		// message, replayed, and the server reads each once, in order.
		e := newEnv(t, "restart-mid-client-stream", envOptions{policy: policy, server: scenarioServer(), serverStrict: true})
		id := e.newID()
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		st, err := e.tc.ClientStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		send := func(i int) {
			req := &testingv1.ClientStreamRequest{Payload: []byte{byte('0' + i)}}
			if i == 0 {
				req.Behavior = &testingv1.Behavior{CallId: id}
			}
			// A send into the killed attempt may fail with io.EOF; the
			// message is buffered and replayed.
			if err := st.Send(req); err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		for i := range 3 {
			send(i)
		}
		if err := e.svc.WaitAttempts(ctx, id, 1); err != nil {
			t.Fatal(err)
		}
		restart(t, e)
		for i := 3; i < 6; i++ {
			send(i)
		}
		resp, err := st.CloseAndRecv()
		e.inv.calls.Add(1)
		e.inv.streams.Add(1)
		e.inv.deadline(ctx, start, time.Now(), time.Time{}, "client stream "+id)
		if err != nil {
			t.Fatalf("client stream across a restart: %v", err)
		}
		e.inv.ok.Add(1)
		var got string
		for _, p := range resp.GetPayloads() {
			got += string(p)
		}
		e.inv.check()
		if got != "012345" {
			e.inv.lost.Add(1)
			t.Errorf("the server received %q, want 012345", got)
		}
		e.verify()
	})

	t.Run("mid-bidi-stream-after-commit", func(t *testing.T) {
		// Once the application has a message, the stream is committed: the
		// restart's error reaches it as is, and it never sees a message
		// twice.
		e := newEnv(t, "restart-mid-stream-committed", envOptions{policy: policy, server: scenarioServer(), serverStrict: true})
		id := e.newID()
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		st, err := e.tc.BidiStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&testingv1.BidiStreamRequest{Behavior: &testingv1.Behavior{CallId: id}, Payload: []byte("0")}); err != nil {
			t.Fatal(err)
		}
		sc := &seqCheck{inv: e.inv, id: id}
		m, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		sc.see(m.GetReply())
		restart(t, e)
		_ = st.Send(&testingv1.BidiStreamRequest{Payload: []byte("1")}) // may fail with io.EOF
		for {
			m, err = st.Recv()
			if err != nil {
				break
			}
			sc.see(m.GetReply())
		}
		e.inv.calls.Add(1)
		e.inv.streams.Add(1)
		e.inv.deadline(ctx, start, time.Now(), time.Time{}, "bidi stream "+id)
		if status.Code(err) != codes.Unavailable {
			t.Errorf("committed stream across a restart ended with %v, want UNAVAILABLE", err)
		}
		if got := e.svc.Attempts(id); got != 1 {
			t.Errorf("committed stream made %d attempts, want 1", got)
		}
		// The restarted server serves new streams.
		res := e.do(t.Context(), call{kind: kindBidi, timeout: 10 * time.Second, messages: 3})
		if res.err != nil || res.received != 3 {
			t.Errorf("new stream after the restart: %d echoes, %v", res.received, res.err)
		}
		e.verify()
	})

	t.Run("random-restarts", func(t *testing.T) {
		e := newEnv(t, "restart-random", envOptions{policy: scenarioPolicy(), methodPolicies: hedgedQuery(), server: scenarioServer()})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var wg sync.WaitGroup
		wg.Go(func() {
			r := rand.New(rand.NewPCG(chaosSeed, 1))
			for {
				up := time.NewTimer(time.Duration(50+r.IntN(150)) * time.Millisecond)
				select {
				case <-ctx.Done():
					up.Stop()
					return
				case <-up.C:
				}
				e.srv.Stop()
				e.inv.restarts.Add(1)
				down := time.NewTimer(time.Duration(r.IntN(30)) * time.Millisecond)
				<-down.C
				if err := e.srv.Restart(); err != nil {
					t.Errorf("restart: %v", err)
					return
				}
			}
		})
		e.run(ctx, 12, chaosSeed, 2*time.Second, mix{
			failRate: 0.2, codes: allCodes, hangRate: 0.05,
			minTimeout: 50 * time.Millisecond, maxTimeout: 500 * time.Millisecond, maxMessages: 5,
		}, nil)
		cancel()
		wg.Wait()
		if e.inv.restarts.Load() == 0 || e.inv.ok.Load() == 0 {
			t.Errorf("%d restarts, %d successful calls: the scenario tested nothing", e.inv.restarts.Load(), e.inv.ok.Load())
		}
		e.verify()
	})
}

// TestChaosProxy puts the chaos proxy between client and server: refused
// handshakes, connections reset mid-call, stalls of up to 300ms and a slow
// link, at random, under 12 concurrent callers making every kind of call.
func TestChaosProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	leakCheck(t)
	e := newEnv(t, "proxy", envOptions{
		policy: scenarioPolicy(), methodPolicies: hedgedQuery(), server: scenarioServer(), seed: chaosSeed,
		proxy: &proxyFaults{
			RefuseRate: 0.2,
			ResetRate:  0.01,
			StallRate:  0.01, StallMax: 300 * time.Millisecond,
			SlowRate: 0.1, SlowMax: 5 * time.Millisecond,
		},
	})
	e.run(t.Context(), 12, chaosSeed, 3*time.Second, mix{
		failRate: 0.1, codes: allCodes, hangRate: 0.02,
		minTimeout: 50 * time.Millisecond, maxTimeout: 800 * time.Millisecond, maxMessages: 8,
	}, nil)
	s := e.proxy.Stats()
	if s.Resets == 0 || s.Stalls == 0 || e.inv.ok.Load() == 0 {
		t.Errorf("%d resets, %d stalls, %d successful calls: the scenario tested nothing", s.Resets, s.Stalls, e.inv.ok.Load())
	}
	e.verify()
}

// TestChaosHangingHandlers sends calls whose handlers sleep an hour: every
// call must end by its deadline (the per-attempt timeout retries the
// idempotent ones inside it), the bulkhead must hold while they hang, and
// every handler must end once its caller has gone.
func TestChaosHangingHandlers(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	leakCheck(t)
	e := newEnv(t, "hanging-handlers", envOptions{
		policy: scenarioPolicy(), methodPolicies: hedgedQuery(), server: scenarioServer(), serverStrict: true,
	})
	var wg sync.WaitGroup
	r := rand.New(rand.NewPCG(chaosSeed, 2))
	for i := range 48 {
		c := call{
			kind:     kind(i % int(numKinds)),
			timeout:  time.Duration(50+r.IntN(350)) * time.Millisecond,
			messages: 2,
			behavior: &testingv1.Behavior{Sleep: durationpb.New(time.Hour), StreamMessages: 2},
		}
		e.inv.hangs.Add(1)
		wg.Go(func() {
			res := e.do(t.Context(), c)
			// A shed call retried until the deadline may end with the
			// server's RESOURCE_EXHAUSTED; every other with the deadline.
			if code := status.Code(res.err); code != codes.DeadlineExceeded && code != codes.ResourceExhausted {
				t.Errorf("%v call hanging for an hour ended with %v, want DEADLINE_EXCEEDED", c.kind, res.err)
			}
		})
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.hw.waitIdle(ctx); err != nil {
		t.Errorf("handlers outlived their callers: %v", err)
	}
	if e.events.shed.Load() == 0 {
		t.Error("48 hanging calls against a bulkhead of 8 shed nothing")
	}
	e.verify()
}

// TestChaosStatusMix makes the server answer with a random mix of every
// status code, from Behaviors and from the seeded chaos interceptor
// (injected errors, latency, stream aborts before and after commit), and
// checks the classification end to end: codes that are never retried get
// exactly one attempt.
func TestChaosStatusMix(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	leakCheck(t)
	cfg := scenarioServer()
	cfg.Chaos = server.ChaosConfig{Seed: chaosSeed, Faults: server.FaultConfig{
		All: server.Fault{ErrorRate: 0.15, Code: codes.Unavailable, LatencyMax: 3 * time.Millisecond},
		Methods: map[string]server.Fault{
			testingv1.TestService_IdempotentUnary_FullMethodName: {ErrorRate: 0.2, Code: codes.ResourceExhausted, Pushback: 2 * time.Millisecond},
			testingv1.TestService_Unary_FullMethodName:           {ErrorRate: 0.1, Code: codes.Internal},
			testingv1.TestService_ServerStream_FullMethodName:    {AbortRate: 0.3, AbortAfter: 1, Code: codes.Unavailable},
			testingv1.TestService_BidiStream_FullMethodName:      {AbortRate: 0.3, Code: codes.Unavailable},
		},
	}}
	e := newEnv(t, "status-mix", envOptions{policy: scenarioPolicy(), server: cfg, serverStrict: true})
	m := mix{
		failRate: 0.6, codes: append(append([]codes.Code(nil), allCodes...), transient...),
		minTimeout: 200 * time.Millisecond, maxTimeout: time.Second, maxMessages: 5,
	}
	e.run(t.Context(), 8, chaosSeed, 2*time.Second, m, func(c call, res result) {
		code := status.Code(res.err)
		if !serverFinal(code) {
			return
		}
		// The call ended with a code that is never retried: exactly one
		// attempt ended with it on the server, the last one (by number);
		// the attempts before it, if any, failed with codes that are
		// retried (injected UNAVAILABLE, stream aborts before commit,
		// shedding, a per-attempt timeout).
		e.inv.check()
		as := e.rec.attemptsOf(res.id)
		var finals, last int
		for _, a := range as {
			if serverFinal(a.code) {
				finals++
			}
			last = max(last, a.n)
		}
		if finals != 1 || len(as) == 0 || !slices.Contains(as, serverAttempt{n: last, code: code}) {
			e.inv.fail("%v call %s ended with %v; the server's attempts ended with %v, want exactly one %v, the last", c.kind, res.id, code, as, code)
		}
	})
	if e.events.faultErrors.Load() == 0 || e.events.faultAborts.Load() == 0 {
		t.Errorf("chaos injected %d errors and %d aborts: the scenario tested nothing", e.events.faultErrors.Load(), e.events.faultAborts.Load())
	}
	e.verify()
}

// TestNeverRetriedCodes answers every attempt of calls of every shape with
// each code the default table never retries, under a policy that retries
// everything else: each call ends with that code after exactly one
// attempt.
func TestNeverRetriedCodes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	leakCheck(t)
	e := newEnv(t, "never-retried", envOptions{server: scenarioServer(), serverStrict: true, policy: interceptors.Policy{
		Retry: &interceptors.RetryPolicy{MaxAttempts: 5, Backoff: interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: time.Millisecond}, Budget: interceptors.NoBudget},
	}})
	for code := range neverRetried {
		for k := range numKinds {
			res := e.do(t.Context(), call{kind: k, timeout: 5 * time.Second, messages: 2, behavior: &testingv1.Behavior{
				FailAttempts: -1, FailCode: uint32(code), StreamMessages: 2,
			}})
			e.inv.check()
			if got := status.Code(res.err); got != code {
				e.inv.fail("%v call failing with %v ended with %v", k, code, res.err)
			}
			if got := e.svc.Attempts(res.id); got != 1 {
				e.inv.fail("%v call failing with %v made %d attempts, want 1", k, code, got)
			}
		}
	}
	e.verify()
}

// TestChaosRetryBudget takes the server away entirely and checks that the
// retries of many calls stay within what their budget allows, counting the
// attempts on the server (server up, every attempt failing) and on the
// client (server down, no attempt reaching it).
func TestChaosRetryBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	leakCheck(t)
	const calls = 200
	outage := &testingv1.Behavior{FailAttempts: -1, FailCode: uint32(codes.Unavailable)}
	cases := []struct {
		name   string
		budget retry.Budget
		down   bool
		// bound is the most retries the budget allows for calls calls.
		bound int64
	}{
		// gRPC's retry throttling with 10 tokens: retries only while more
		// than 5 remain, each failure taking one, so only the failures that
		// leave 9, 8, 7 or 6 tokens may be retried.
		{"token-bucket", retry.NewTokenBucket(10, 0.1), false, 4},
		{"token-bucket-server-down", retry.NewTokenBucket(10, 0.1), true, 4},
		// Finagle's budget without a floor: a tenth of the calls, plus one
		// for the rounding of a retry's cost.
		{"ratio", retry.NewRatioBudget(time.Minute, 0, 0.1), false, calls/10 + 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "budget-"+tc.name, envOptions{server: scenarioServer(), serverStrict: !tc.down,
				policy: interceptors.Policy{Retry: &interceptors.RetryPolicy{
					MaxAttempts: 5, Backoff: interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: time.Millisecond}, Jitter: interceptors.JitterNone, Budget: tc.budget,
				}}})
			if tc.down {
				e.srv.Stop()
			}
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() {
					for range calls / 8 {
						res := e.do(t.Context(), call{kind: kind(i % 2), timeout: 5 * time.Second, behavior: &testingv1.Behavior{
							FailAttempts: outage.FailAttempts, FailCode: outage.FailCode,
						}})
						if status.Code(res.err) != codes.Unavailable {
							t.Errorf("call during an outage ended with %v, want UNAVAILABLE", res.err)
						}
					}
				})
			}
			wg.Wait()
			retries := e.inv.retries.Load()
			e.inv.check()
			if retries > tc.bound || retries < 1 {
				e.inv.fail("%d retries for %d calls during an outage, the budget allows 1..%d", retries, calls, tc.bound)
			}
			if !tc.down {
				// Every attempt the client made reached the server.
				e.inv.check()
				if got, want := e.rec.attempts.Load(), calls+retries; got != want {
					e.inv.fail("the server saw %d attempts, the client made %d", got, want)
				}
			}
			t.Logf("budget %s: %d calls, %d retries, bound %d", tc.name, calls, retries, tc.bound)
			e.verify()
		})
	}
}
