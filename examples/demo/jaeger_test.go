package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// testdata/jaeger-trace.json is Jaeger's answer for a call of the demo's
// outage profile: an attempt that failed with an injected fault, one the
// server shed, and one after the server's pushback, then the fallback.
func TestFormatTrace(t *testing.T) {
	body, err := os.ReadFile("testdata/jaeger-trace.json")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := formatTrace(&out, body); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	t.Logf("the tree:\n%s", got)
	want := []string{
		"trace 2df018315b3d0b064c52201f62040542: 7 spans\n",
		"Sent.grpcresilience.testing.v1.TestService.IdempotentUnary [grpc-resilience-demo] client at +0.0ms for 318.6ms: OK, 3 attempts, outcome fallback",
		"├─ Attempt.grpcresilience.testing.v1.TestService.IdempotentUnary [grpc-resilience-demo] client attempt 1 at +0.0ms for 123.7ms: Unavailable\n",
		"│  └─ grpcresilience.testing.v1.TestService/IdempotentUnary [grpc-resilience-demo] server at +0.4ms for 123.2ms: UNAVAILABLE {resilience.fault latency, resilience.fault error}\n",
		"├─ Attempt.grpcresilience.testing.v1.TestService.IdempotentUnary [grpc-resilience-demo] client attempt 2 after a wait of 9.4ms at +134.0ms for 0.4ms: ResourceExhausted\n",
		"└─ Attempt.grpcresilience.testing.v1.TestService.IdempotentUnary [grpc-resilience-demo] client attempt 3 after a wait of 50.0ms (server pushback) at +184.5ms",
		"   └─ grpcresilience.testing.v1.TestService/IdempotentUnary [grpc-resilience-demo] server at +186.7ms",
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("the tree lacks %q:\n%s", w, got)
		}
	}
	if n := strings.Count(got, "\n"); n != 8 {
		t.Errorf("%d lines, want 8 (a header and 7 spans):\n%s", n, got)
	}
}

func TestFormatTraceBad(t *testing.T) {
	for _, body := range []string{``, `{`, `{"data":[]}`, `{"data":[{"spans":[]}]}`} {
		if err := formatTrace(&bytes.Buffer{}, []byte(body)); err == nil {
			t.Errorf("formatTrace(%q) = nil, want an error", body)
		}
	}
	// A span whose parent is missing is printed as a root; a cycle of
	// references is never followed.
	body := `{"data":[{"traceID":"t","spans":[{"spanID":"a","references":[{"refType":"CHILD_OF","spanID":"b"}]},{"spanID":"b","references":[{"refType":"CHILD_OF","spanID":"a"}]},{"spanID":"c","references":[{"refType":"CHILD_OF","spanID":"zz"}]}]}]}`
	var out bytes.Buffer
	if err := formatTrace(&out, []byte(body)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "trace t: 3 spans") {
		t.Errorf("got:\n%s", out.String())
	}
}

func FuzzFormatTrace(f *testing.F) {
	if body, err := os.ReadFile("testdata/jaeger-trace.json"); err == nil {
		f.Add(body)
	}
	f.Add([]byte(`{"data":[{"traceID":"t","spans":[{"spanID":"a","startTime":-9223372036854775808,"duration":9223372036854775807,"tags":[{"key":"resilience.attempt.delay_ms","value":"NaN"},{"key":"rpc.grpc.status_code","value":1e300}]}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var out bytes.Buffer
		formatTrace(&out, body)
	})
}

func TestFetchTraceWaitsForSpans(t *testing.T) {
	body, err := os.ReadFile("testdata/jaeger-trace.json")
	if err != nil {
		t.Fatal(err)
	}
	var asked int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/traces/2df018315b3d0b064c52201f62040542" {
			http.NotFound(w, r)
			return
		}
		asked++
		if asked < 3 {
			w.Write([]byte(`{"data":[]}`)) // not stored yet
			return
		}
		w.Write(body)
	}))
	defer srv.Close()
	got, err := fetchTrace(context.Background(), srv.URL, "2df018315b3d0b064c52201f62040542", 3, 20*time.Second)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("fetchTrace = %d bytes, %v", len(got), err)
	}
	if _, err := fetchTrace(context.Background(), srv.URL, "0000", 3, 300*time.Millisecond); err == nil {
		t.Error("fetchTrace of a missing trace succeeded")
	}
}
