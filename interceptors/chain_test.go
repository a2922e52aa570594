package interceptors_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestChainWithLoggingAndOtelgrpc runs the pipeline behind
// go-grpc-middleware's logging interceptor (with a slog logger) and with
// otelgrpc's client stats handler installed: the call is retried twice and
// succeeds, the logger logs one finished call with OK, and otelgrpc records
// one client span per attempt, each with its own span id in one trace.
func TestChainWithLoggingAndOtelgrpc(t *testing.T) {
	forTransports(t, func(t *testing.T, topts []testservice.Option) {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

		var logs syncBuffer
		logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		logInt := logging.UnaryClientInterceptor(logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
			logger.Log(ctx, slog.Level(lvl), msg, fields...)
		}), logging.WithLogOnEvents(logging.FinishCall))

		c := newPipeline(t, interceptors.Policy{Retry: fastRetry(3), Breaker: &interceptors.BreakerPolicy{OpenDuration: time.Hour}})
		e := newEnvDial(t, topts, []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp)))},
			logInt, c.UnaryClientInterceptor())

		// A parent span, so that every attempt span belongs to one trace.
		ctx, parent := tp.Tracer("test").Start(ctxTimeout(t, 10*time.Second), "call")
		resp, err := e.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Failing("chain", 2, codes.Unavailable)})
		parent.End()
		if err != nil || resp.GetReply().GetAttempt() != 3 {
			t.Fatalf("got %v, %v; want attempt 3 to answer", resp.GetReply(), err)
		}

		var attempts []sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.SpanKind() == trace.SpanKindClient {
				attempts = append(attempts, s)
			}
		}
		if len(attempts) != 3 {
			t.Fatalf("otelgrpc recorded %d client spans, want one per attempt (3)", len(attempts))
		}
		ids := map[trace.SpanID]bool{}
		for _, s := range attempts {
			ids[s.SpanContext().SpanID()] = true
			if s.Parent().SpanID() != parent.SpanContext().SpanID() || !strings.Contains(s.Name(), "Unary") {
				t.Errorf("span %q has parent %v, want the call's", s.Name(), s.Parent().SpanID())
			}
		}
		if len(ids) != 3 {
			t.Errorf("attempt spans share ids: %v", ids)
		}

		out := logs.String()
		if n := strings.Count(out, "finished call"); n != 1 || !strings.Contains(out, "grpc.code=OK") {
			t.Errorf("log has %d finished calls, want one with OK:\n%s", n, out)
		}
	})
}
