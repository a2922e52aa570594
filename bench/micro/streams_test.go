package micro

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	mwretry "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/retry"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// streamMessages is how many messages each server stream of
// BenchmarkStreamServer carries: streams are opened as the messages run out.
const streamMessages = 100

// streamPipeline is one library's stream client interceptor; nil is bare
// gRPC. callOpts are added to every call.
type streamPipeline struct {
	lib      string
	ic       grpc.StreamClientInterceptor
	callOpts []grpc.CallOption
}

// streamPipelines returns the stream client interceptors measured on the
// success path. Ours is the full pipeline: retry (3 attempts, the default
// per-target budget), breaker and client bulkhead. go-grpc-middleware
// retries nothing by default, so it gets 3 attempts (WithMax(3)). It
// refuses client-streaming calls unless retries are disabled for them, as
// its error says, so bidi calls pass it mwretry.Disable() (clientStreams
// true): what they measure is its pass-through, the only way a bidi call
// goes through it.
func streamPipelines(tb testing.TB, clientStreams bool) []streamPipeline {
	full, err := interceptors.NewClient(interceptors.Config{Default: interceptors.Policy{
		Retry:    &interceptors.RetryPolicy{},
		Breaker:  &interceptors.BreakerPolicy{},
		Bulkhead: &interceptors.BulkheadPolicy{Limit: 1 << 20},
	}})
	if err != nil {
		tb.Fatal(err)
	}
	mw := streamPipeline{lib: "go-grpc-middleware-retry", ic: mwretry.StreamClientInterceptor(mwretry.WithMax(3))}
	if clientStreams {
		mw.callOpts = []grpc.CallOption{mwretry.Disable()}
	}
	return []streamPipeline{
		{lib: "bare"},
		{lib: "ours", ic: full.StreamClientInterceptor()},
		mw,
	}
}

// client returns a TestService client on its own connection to srv through
// p, connected before it returns.
func (p streamPipeline) client(tb testing.TB, srv *testservice.Server) testingv1.TestServiceClient {
	opts := []grpc.DialOption{grpc.WithDisableRetry()}
	if p.ic != nil {
		opts = append(opts, grpc.WithStreamInterceptor(p.ic))
	}
	client := srv.Client(tb, opts...)
	if _, err := client.IdempotentUnary(callerContext(tb), &testingv1.IdempotentUnaryRequest{}); err != nil {
		tb.Fatal(err)
	}
	return client
}

// reportRate reports the messages per second of a benchmark whose every op
// is one message.
func reportRate(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "msgs/s")
	}
}

// serverStreamReader receives the messages of consecutive server streams
// of streamMessages messages each, opening the next when one ends.
type serverStreamReader struct {
	ctx    context.Context
	client testingv1.TestServiceClient
	opts   []grpc.CallOption
	req    *testingv1.ServerStreamRequest
	st     grpc.ServerStreamingClient[testingv1.ServerStreamResponse]
	msg    testingv1.ServerStreamResponse
}

// next receives one message.
func (r *serverStreamReader) next() error {
	for {
		if r.st == nil {
			st, err := r.client.ServerStream(r.ctx, r.req, r.opts...)
			if err != nil {
				return err
			}
			r.st = st
		}
		err := r.st.RecvMsg(&r.msg)
		if err == nil {
			return nil
		}
		r.st = nil
		if !errors.Is(err, io.EOF) {
			return err
		}
	}
}

// drain reads the stream in progress, if any, to its end.
func (r *serverStreamReader) drain() error {
	for r.st != nil {
		err := r.st.RecvMsg(&r.msg)
		if err == nil {
			continue
		}
		r.st = nil
		if !errors.Is(err, io.EOF) {
			return err
		}
	}
	return nil
}

// BenchmarkStreamServer measures server-streaming throughput on loopback
// TCP: each op is one message received, from streams of streamMessages
// messages opened as needed, so ns/op is the cost of one message with the
// stream's setup spread over its messages.
func BenchmarkStreamServer(b *testing.B) {
	srv := testservice.StartTB(b, testservice.WithTCP(""))
	ctx := callerContext(b)
	req := &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "bench", StreamMessages: streamMessages}, Payload: []byte("ping")}
	for _, p := range streamPipelines(b, false) {
		r := &serverStreamReader{ctx: ctx, client: p.client(b, srv), opts: p.callOpts, req: req}
		b.Run(p.lib, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := r.next(); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b)
			b.StopTimer()
			if err := r.drain(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkStreamBidi measures bidi throughput on loopback TCP over one
// long-lived stream per library: each op sends one request and receives
// its echo.
func BenchmarkStreamBidi(b *testing.B) {
	srv := testservice.StartTB(b, testservice.WithTCP(""))
	ctx := callerContext(b)
	req := &testingv1.BidiStreamRequest{Behavior: &testingv1.Behavior{CallId: "bench"}, Payload: []byte("ping")}
	for _, p := range streamPipelines(b, true) {
		client := p.client(b, srv)
		b.Run(p.lib, func(b *testing.B) {
			st, err := client.BidiStream(ctx, p.callOpts...)
			if err != nil {
				b.Fatal(err)
			}
			var reply testingv1.BidiStreamResponse
			b.ReportAllocs()
			for b.Loop() {
				if err := st.Send(req); err != nil {
					b.Fatal(err)
				}
				if err := st.RecvMsg(&reply); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b)
			b.StopTimer()
			if err := closeBidi(st); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// closeBidi closes the sending side of st and reads it to its end.
func closeBidi(st grpc.BidiStreamingClient[testingv1.BidiStreamRequest, testingv1.BidiStreamResponse]) error {
	if err := st.CloseSend(); err != nil {
		return err
	}
	for {
		if _, err := st.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// BenchmarkStreamOpen measures the per-stream cost on loopback TCP: each
// op opens a server stream, receives its one message and reads its end.
func BenchmarkStreamOpen(b *testing.B) {
	srv := testservice.StartTB(b, testservice.WithTCP(""))
	ctx := callerContext(b)
	req := &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "bench", StreamMessages: 1}, Payload: []byte("ping")}
	for _, p := range streamPipelines(b, false) {
		client := p.client(b, srv)
		b.Run(p.lib, func(b *testing.B) {
			var msg testingv1.ServerStreamResponse
			b.ReportAllocs()
			for b.Loop() {
				if err := openOnce(ctx, client, req, &msg, p.callOpts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// openOnce opens a server stream of one message and reads it to its end.
func openOnce(ctx context.Context, client testingv1.TestServiceClient, req *testingv1.ServerStreamRequest, msg *testingv1.ServerStreamResponse, opts []grpc.CallOption) error {
	st, err := client.ServerStream(ctx, req, opts...)
	if err != nil {
		return err
	}
	if err := st.RecvMsg(msg); err != nil {
		return err
	}
	if err := st.RecvMsg(msg); !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// TestStreamPipelinesAnswer checks that every measured stream interceptor
// delivers every message, in order, on the paths the benchmarks take.
func TestStreamPipelinesAnswer(t *testing.T) {
	srv := testservice.StartTB(t, testservice.WithTCP(""))
	ctx := callerContext(t)
	for _, p := range streamPipelines(t, false) {
		client := p.client(t, srv)
		r := &serverStreamReader{ctx: ctx, client: client, opts: p.callOpts,
			req: &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "answer", StreamMessages: 3}}}
		for i := range 7 {
			if err := r.next(); err != nil {
				t.Fatalf("%s: message %d: %v", p.lib, i, err)
			}
			if got, want := r.msg.GetReply().GetSequence(), int32(i%3); got != want {
				t.Fatalf("%s: message %d has sequence %d, want %d", p.lib, i, got, want)
			}
		}
		if err := r.drain(); err != nil {
			t.Fatalf("%s: drain: %v", p.lib, err)
		}
	}
	for _, p := range streamPipelines(t, true) {
		client := p.client(t, srv)
		st, err := client.BidiStream(ctx, p.callOpts...)
		if err != nil {
			t.Fatalf("%s: %v", p.lib, err)
		}
		for i := range 5 {
			if err := st.Send(&testingv1.BidiStreamRequest{Behavior: &testingv1.Behavior{CallId: "answer"}}); err != nil {
				t.Fatalf("%s: send %d: %v", p.lib, i, err)
			}
			reply, err := st.Recv()
			if err != nil {
				t.Fatalf("%s: recv %d: %v", p.lib, i, err)
			}
			if got := reply.GetReply().GetSequence(); got != int32(i) {
				t.Fatalf("%s: reply %d has sequence %d", p.lib, i, got)
			}
		}
		if err := closeBidi(st); err != nil {
			t.Fatalf("%s: close: %v", p.lib, err)
		}
	}
}

// pairedBlock is how many ops each library runs in turn in a round of
// BenchmarkStreamPaired.
const pairedBlock = 20

// pairedPipelines are the stream pipelines of BenchmarkStreamPaired, with
// the short names its metrics use: those of streamPipelines, and a second
// bare connection as a control, whose ratio to bare is the noise floor of
// the run.
func pairedPipelines(tb testing.TB, clientStreams bool) []streamPipeline {
	ps := streamPipelines(tb, clientStreams)
	short := map[string]string{"bare": "bare", "ours": "ours", "go-grpc-middleware-retry": "mw"}
	for i := range ps {
		ps[i].lib = short[ps[i].lib]
	}
	return append(ps, streamPipeline{lib: "control"})
}

// pairedOp is one library's op in BenchmarkStreamPaired.
type pairedOp struct {
	lib string
	op  func() error
}

// BenchmarkStreamPaired runs the three stream benchmarks' ops for every
// library in turn, in blocks of pairedBlock ops rotated each round, and
// reports each library's ns per op and its ratio to bare's ("ours/bare",
// "mw/bare", and "control/bare" for a second bare connection): since the
// libraries alternate within milliseconds, a load that comes and goes on
// a shared machine falls on all of them alike, where separate benchmarks
// would each meet a different share of it. An op of the benchmark is one
// round.
func BenchmarkStreamPaired(b *testing.B) {
	srv := testservice.StartTB(b, testservice.WithTCP(""))
	ctx := callerContext(b)
	b.Run("server", func(b *testing.B) {
		req := &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "bench", StreamMessages: streamMessages}, Payload: []byte("ping")}
		var ops []pairedOp
		var readers []*serverStreamReader
		for _, p := range pairedPipelines(b, false) {
			r := &serverStreamReader{ctx: ctx, client: p.client(b, srv), opts: p.callOpts, req: req}
			readers = append(readers, r)
			ops = append(ops, pairedOp{p.lib, r.next})
		}
		runPaired(b, ops)
		for _, r := range readers {
			if err := r.drain(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bidi", func(b *testing.B) {
		req := &testingv1.BidiStreamRequest{Behavior: &testingv1.Behavior{CallId: "bench"}, Payload: []byte("ping")}
		var ops []pairedOp
		var streams []grpc.BidiStreamingClient[testingv1.BidiStreamRequest, testingv1.BidiStreamResponse]
		for _, p := range pairedPipelines(b, true) {
			st, err := p.client(b, srv).BidiStream(ctx, p.callOpts...)
			if err != nil {
				b.Fatal(err)
			}
			streams = append(streams, st)
			var reply testingv1.BidiStreamResponse
			ops = append(ops, pairedOp{p.lib, func() error {
				if err := st.Send(req); err != nil {
					return err
				}
				return st.RecvMsg(&reply)
			}})
		}
		runPaired(b, ops)
		for _, st := range streams {
			if err := closeBidi(st); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open", func(b *testing.B) {
		req := &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "bench", StreamMessages: 1}, Payload: []byte("ping")}
		var ops []pairedOp
		for _, p := range pairedPipelines(b, false) {
			client := p.client(b, srv)
			var msg testingv1.ServerStreamResponse
			ops = append(ops, pairedOp{p.lib, func() error { return openOnce(ctx, client, req, &msg, p.callOpts) }})
		}
		runPaired(b, ops)
	})
}

// runPaired runs the rounds of BenchmarkStreamPaired over ops, the first
// of which is bare, after an untimed round, and reports the figures: wall
// time per op, and the process's CPU time per op (client and server
// together, "cpu").
func runPaired(b *testing.B, ops []pairedOp) {
	// A round before the timed ones, so that no library pays alone for
	// what its first ops set up (its first stream, its state per method).
	for _, o := range ops {
		for range pairedBlock {
			if err := o.op(); err != nil {
				b.Fatal(err)
			}
		}
	}
	wall := make([]time.Duration, len(ops))
	cpu := make([]time.Duration, len(ops))
	round := 0
	for b.Loop() {
		for i := range ops {
			k := (i + round) % len(ops)
			start, startCPU := time.Now(), processCPU(b)
			for range pairedBlock {
				if err := ops[k].op(); err != nil {
					b.Fatal(err)
				}
			}
			cpu[k] += processCPU(b) - startCPU
			wall[k] += time.Since(start)
		}
		round++
	}
	n := float64(round * pairedBlock)
	for k, o := range ops {
		b.ReportMetric(float64(wall[k].Nanoseconds())/n, o.lib+"-ns/op")
		if k > 0 {
			b.ReportMetric(float64(wall[k])/float64(wall[0]), o.lib+"/bare")
			b.ReportMetric(float64(cpu[k])/float64(cpu[0]), o.lib+"/bare-cpu")
		}
	}
}

// processCPU returns the CPU time the process has used so far.
func processCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}
