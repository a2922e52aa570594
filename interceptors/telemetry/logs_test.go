package telemetry_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// logLines returns the non-empty lines of the log.
func logLines(b *syncBuffer) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// TestLogsQuietWhenHealthy: at Info, a healthy system logs nothing, even
// with an occasional retry that succeeds; at Debug the retry is there.
func TestLogsQuietWhenHealthy(t *testing.T) {
	for _, c := range []struct {
		level slog.Level
		want  []string
	}{
		{slog.LevelInfo, nil},
		{slog.LevelDebug, []string{
			`level=DEBUG msg="grpc attempt failed" method=/grpcresilience.testing.v1.TestService/Unary attempt=1 code=Unavailable`,
			`level=DEBUG msg="grpc call retried" method=/grpcresilience.testing.v1.TestService/Unary attempt=1 delay=1ms code=Unavailable`,
		}},
	} {
		t.Run(c.level.String(), func(t *testing.T) {
			r := newRig(t, rigConfig{policy: interceptors.Policy{Retry: fastRetry(3), Breaker: &interceptors.BreakerPolicy{}}, logLevel: c.level})
			ctx := ctxTimeout(t, 10*time.Second)
			if _, err := r.client.Unary(ctx, &testingv1.UnaryRequest{}); err != nil {
				t.Fatal(err)
			}
			if _, err := r.client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Failing("once", 1, codes.Unavailable)}); err != nil {
				t.Fatal(err)
			}
			lines := logLines(r.logs)
			if len(lines) != len(c.want) {
				t.Fatalf("log has %d lines, want %d:\n%s", len(lines), len(c.want), r.logs)
			}
			for i, w := range c.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("line %d:\n%s\nwant it to start with\n%s", i, lines[i], w)
				}
			}
		})
	}
}

// TestLogsWarnings: at Warn, exhausted retries and an opening breaker are
// logged, and nothing else.
func TestLogsWarnings(t *testing.T) {
	r := newRig(t, rigConfig{policy: interceptors.Policy{
		Retry:   fastRetry(2),
		Breaker: &interceptors.BreakerPolicy{FailureThreshold: 2, OpenDuration: time.Hour},
	}, logLevel: slog.LevelWarn})
	if _, err := r.client.Unary(ctxTimeout(t, 10*time.Second), &testingv1.UnaryRequest{Behavior: testservice.Failing("w", -1, codes.Unavailable)}); err == nil {
		t.Fatal("call succeeded")
	}
	want := []string{
		`level=WARN msg="circuit breaker open" breaker=`,
		`level=WARN msg="grpc call failed after its last attempt" method=/grpcresilience.testing.v1.TestService/Unary attempt=2 code=Unavailable`,
	}
	lines := logLines(r.logs)
	if len(lines) != len(want) {
		t.Fatalf("log has %d lines, want %d:\n%s", len(lines), len(want), r.logs)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d:\n%s\nwant it to start with\n%s", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[0], "from=closed to=open") {
		t.Errorf("breaker line lacks its transition: %s", lines[0])
	}
}
