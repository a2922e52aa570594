package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// jaegerBinary returns the path of the pinned Jaeger: $JAEGER_BIN when set
// (`make test` sets it after `make jaeger-bin`), else .cache/jaeger in the
// repository, built with tools/jaeger/go.mod when missing or older than its
// go.sum, as `make jaeger` does. Under -short, with no JAEGER_BIN, the test
// is skipped instead of building (a cold build takes about ten minutes).
func jaegerBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("JAEGER_BIN"); bin != "" {
		return bin
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, ".cache", "jaeger")
	sum, err := os.Stat(filepath.Join(root, "tools", "jaeger", "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(bin); err == nil && fi.ModTime().After(sum.ModTime()) {
		return bin
	}
	if testing.Short() {
		t.Skip("JAEGER_BIN is unset and .cache/jaeger is missing or stale; run `make jaeger` (or the test without -short, which builds it)")
	}
	t.Logf("building Jaeger into %s (about ten minutes on a cold cache)", bin)
	cmd := exec.CommandContext(t.Context(), "go", "build", "-modfile=tools/jaeger/go.mod", "-o", bin, "github.com/jaegertracing/jaeger/cmd/jaeger")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building Jaeger: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a loopback address with a port that was free a moment
// ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// jaeger is a running Jaeger.
type jaeger struct {
	otlp, query string // loopback addresses
	http        *http.Client
}

// startJaeger starts Jaeger with tools/jaeger/config.yaml on free loopback
// ports, waits until its health check answers, and kills it when the test
// ends.
func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	bin := jaegerBinary(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	j := &jaeger{otlp: freePort(t), query: freePort(t), http: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}}
	health := freePort(t)
	cmd := exec.Command(bin, "--config=file:"+filepath.Join(root, "tools", "jaeger", "config.yaml"))
	cmd.Env = append(os.Environ(),
		"JAEGER_OTLP_GRPC="+j.otlp, "JAEGER_QUERY_HTTP="+j.query,
		"JAEGER_QUERY_GRPC="+freePort(t), "JAEGER_HEALTH="+health)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("jaeger's output:\n%s", out.String())
		}
	})
	// Readiness: poll the health check, bounded.
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := j.http.Get("http://" + health + "/status")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return j
			}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("jaeger exited before it was ready: %v\n%s", err, out.String())
		case <-deadline.C:
			t.Fatalf("jaeger not ready after 60s\n%s", out.String())
		case <-tick.C:
		}
	}
}

// Jaeger's JSON API (/api/traces), the fields the test reads.
type (
	jTrace struct {
		TraceID   string              `json:"traceID"`
		Spans     []jSpan             `json:"spans"`
		Processes map[string]jProcess `json:"processes"`
	}
	jSpan struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		Tags      []jTag `json:"tags"`
		Logs      []jLog `json:"logs"`
		ProcessID string `json:"processID"`
	}
	jTag struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	}
	jLog struct {
		Fields []jTag `json:"fields"`
	}
	jProcess struct {
		ServiceName string `json:"serviceName"`
	}
)

func (s jSpan) tag(key string) string {
	for _, t := range s.Tags {
		if t.Key == key {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

func (s jSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

func (s jSpan) events() []string {
	var out []string
	for _, l := range s.Logs {
		for _, f := range l.Fields {
			if f.Key == "event" {
				out = append(out, fmt.Sprint(f.Value))
			}
		}
	}
	return out
}

func (tr jTrace) children(parent string) []jSpan {
	var out []jSpan
	for _, s := range tr.Spans {
		if s.parent() == parent {
			out = append(out, s)
		}
	}
	return out
}

// traces asks Jaeger for the traces of service until it returns want of
// them, each with at least minSpans spans, bounded.
func (j *jaeger) traces(t *testing.T, service string, want, minSpans int) []jTrace {
	t.Helper()
	q := url.Values{"service": {service}, "limit": {"100"}, "lookback": {"1h"}}
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		var body struct {
			Data []jTrace `json:"data"`
		}
		resp, err := j.http.Get("http://" + j.query + "/api/traces?" + q.Encode())
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&body)
			_ = resp.Body.Close()
		}
		if err == nil && len(body.Data) == want && !slices.ContainsFunc(body.Data, func(tr jTrace) bool { return len(tr.Spans) < minSpans }) {
			return body.Data
		}
		last = fmt.Sprintf("err %v, %d traces", err, len(body.Data))
		select {
		case <-deadline.C:
			t.Fatalf("Jaeger did not return %d traces of %s in 30s; last answer: %s", want, service, last)
		case <-tick.C:
		}
	}
}

// tracerProvider exports to Jaeger's OTLP receiver as service.
func tracerProvider(t *testing.T, otlp, service string) *sdktrace.TracerProvider {
	t.Helper()
	exp, err := otlptracegrpc.New(t.Context(), otlptracegrpc.WithEndpoint(otlp), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", service))
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
}

// TestJaeger sends calls through the client pipeline and a server with the
// server pipeline, both traced with the OTLP exporter into a real Jaeger,
// then reads the traces back from Jaeger's query API and checks their
// trees: a retried call (one call span; attempts 1..3 under it, the failed
// ones marked with their status code; each server span under its attempt)
// and a call whose failures open the breaker (a rejection event on the call
// span, an error status).
func TestJaeger(t *testing.T) {
	j := startJaeger(t)
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	clientService, serverService := "resilience-client-"+id, "resilience-server-"+id
	clientTP := tracerProvider(t, j.otlp, clientService)
	serverTP := tracerProvider(t, j.otlp, serverService)
	prop := propagation.TraceContext{}

	serverTel, err := telemetry.New(telemetry.Config{TracerProvider: serverTP, Propagator: prop})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := server.New(server.Config{Observer: serverTel.ServerObserver()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := testservice.Start(testservice.WithTCP("127.0.0.1:0"), testservice.WithServerOptions(
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(serverTP), otelgrpc.WithPropagators(prop))),
		grpc.ChainUnaryInterceptor(sp.UnaryServerInterceptor())))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	clientTel, err := telemetry.New(telemetry.Config{TracerProvider: clientTP, Propagator: prop})
	if err != nil {
		t.Fatal(err)
	}
	retry3 := &interceptors.RetryPolicy{MaxAttempts: 3, Backoff: interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: 5 * time.Millisecond}, Jitter: interceptors.JitterNone, Budget: interceptors.NoBudget}
	pipe, err := interceptors.NewClient(interceptors.Config{
		Default: interceptors.Policy{Retry: retry3},
		Methods: map[string]interceptors.Policy{testingv1.TestService_Query_FullMethodName: {
			Retry:   retry3,
			Breaker: &interceptors.BreakerPolicy{FailureThreshold: 2, OpenDuration: time.Hour},
		}},
		Observer: clientTel.ClientObserver(),
	})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := srv.Dial(grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(pipe.UnaryClientInterceptor()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testingv1.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	// The server fails the first two attempts of the retried call; every
	// attempt of the other call fails, and two failures open its breaker.
	if _, err := client.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "retried", FailAttempts: 2}}); err != nil {
		t.Fatalf("retried call: %v", err)
	}
	if _, err := client.Query(ctx, &testingv1.QueryRequest{Behavior: &testingv1.Behavior{CallId: "broken", FailAttempts: -1}}); !errors.Is(err, resilience.ErrCircuitOpen) {
		t.Fatalf("breaker call: %v, want the breaker's rejection", err)
	}
	for _, tp := range []*sdktrace.TracerProvider{clientTP, serverTP} {
		if err := tp.Shutdown(ctx); err != nil { // flushes
			t.Fatal(err)
		}
	}

	traces := j.traces(t, clientService, 2, 5)
	var retried, broken *jTrace
	for i, tr := range traces {
		for _, s := range tr.Spans {
			switch s.OperationName {
			case "Sent.grpcresilience.testing.v1.TestService.Unary":
				retried = &traces[i]
			case "Sent.grpcresilience.testing.v1.TestService.Query":
				broken = &traces[i]
			}
		}
	}
	if retried == nil || broken == nil {
		t.Fatalf("traces lack the Unary or the Query call: %+v", traces)
	}
	t.Run("retried", func(t *testing.T) { checkRetried(t, *retried, serverService) })
	t.Run("breaker", func(t *testing.T) { checkBreaker(t, *broken) })
}

// checkRetried asserts the tree of the call whose first two attempts
// failed.
func checkRetried(t *testing.T, tr jTrace, serverService string) {
	roots := tr.children("")
	if len(roots) != 1 || roots[0].OperationName != "Sent.grpcresilience.testing.v1.TestService.Unary" {
		t.Fatalf("trace has %d root spans, want the one call span: %+v", len(roots), roots)
	}
	call := roots[0]
	if got := call.tag(telemetry.AttrAttempts); got != "3" {
		t.Errorf("call span: %s = %q, want 3", telemetry.AttrAttempts, got)
	}
	if got, want := call.events(), []string{telemetry.EventRetry, telemetry.EventRetry}; !slices.Equal(got, want) {
		t.Errorf("call span events %v, want %v", got, want)
	}
	attempts := tr.children(call.SpanID)
	if len(attempts) != 3 {
		t.Fatalf("call span has %d children, want 3 attempts", len(attempts))
	}
	slices.SortFunc(attempts, func(a, b jSpan) int { return cmpInt(a.tag(telemetry.AttrAttempt), b.tag(telemetry.AttrAttempt)) })
	for i, a := range attempts {
		wantCode, wantErr := strconv.Itoa(int(codes.Unavailable)), "ERROR"
		if i == 2 {
			wantCode, wantErr = "0", ""
		}
		if a.OperationName != "Attempt.grpcresilience.testing.v1.TestService.Unary" || a.tag(telemetry.AttrAttempt) != strconv.Itoa(i+1) ||
			a.tag(telemetry.AttrRPCStatusCode) != wantCode || a.tag("otel.status_code") != wantErr {
			t.Errorf("attempt %d: %s, attempt %q, code %q, status %q; want attempt %d, code %s, status %q",
				i+1, a.OperationName, a.tag(telemetry.AttrAttempt), a.tag(telemetry.AttrRPCStatusCode), a.tag("otel.status_code"), i+1, wantCode, wantErr)
		}
		servers := tr.children(a.SpanID)
		if len(servers) != 1 || servers[0].tag("span.kind") != "server" || tr.Processes[servers[0].ProcessID].ServiceName != serverService {
			t.Errorf("attempt %d has %d children, want its server span from %s", i+1, len(servers), serverService)
		}
	}
	if len(tr.Spans) != 7 {
		t.Errorf("trace has %d spans, want 7: call, 3 attempts, 3 server spans", len(tr.Spans))
	}
}

// checkBreaker asserts the tree of the call whose breaker opened.
func checkBreaker(t *testing.T, tr jTrace) {
	roots := tr.children("")
	if len(roots) != 1 {
		t.Fatalf("trace has %d root spans, want 1", len(roots))
	}
	call := roots[0]
	if got, want := call.events(), []string{telemetry.EventRetry, telemetry.EventRetry, telemetry.EventBreakerRejected}; !slices.Equal(got, want) {
		t.Errorf("call span events %v, want %v", got, want)
	}
	if call.tag("otel.status_code") != "ERROR" || call.tag(telemetry.AttrRPCStatusCode) != strconv.Itoa(int(codes.Unavailable)) {
		t.Errorf("call span: status %q, code %q; want ERROR, UNAVAILABLE", call.tag("otel.status_code"), call.tag(telemetry.AttrRPCStatusCode))
	}
	if n := len(tr.children(call.SpanID)); n != 2 {
		t.Errorf("call span has %d attempts, want 2 (the third was rejected)", n)
	}
}

func cmpInt(a, b string) int {
	x, _ := strconv.Atoi(a)
	y, _ := strconv.Atoi(b)
	return x - y
}
