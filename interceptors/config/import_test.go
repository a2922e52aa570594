package config_test

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/engineeringlabs/grpc-resilience/interceptors/config"
	configv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/config/v1"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// TestImportServiceConfig imports a gRPC service config with retry,
// hedging, timeouts, throttling and fields unrelated to resilience, and
// checks the policies it becomes, the notes it leaves, and that the
// imported retry policy retries as gRPC would over a real connection.
func TestImportServiceConfig(t *testing.T) {
	data, err := os.ReadFile("testdata/grpc_service_config.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.ImportServiceConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	// Load detects the format by itself.
	if loaded, err := config.Load("testdata/grpc_service_config.json"); err != nil || len(loaded.Proto().GetMethodPolicies()) != 3 {
		t.Fatalf("Load did not detect the service config: %v", err)
	}

	m := cfg.Proto()
	unary, query, def := m.GetMethodPolicies()[0], m.GetMethodPolicies()[1], m.GetMethodPolicies()[2]
	r := unary.GetRetry()
	if r.GetMaxAttempts() != 4 || r.GetJitter() != configv1.JitterKind_JITTER_KIND_FULL ||
		r.GetBackoff().GetKind() != configv1.BackoffKind_BACKOFF_KIND_EXPONENTIAL ||
		r.GetBackoff().GetInitial().AsDuration() != 10*time.Millisecond || r.GetBackoff().GetMax().AsDuration() != 100*time.Millisecond ||
		r.GetBackoff().GetMultiplier() != 2 || !slices.Equal(r.GetRetryableCodes(), []string{"UNAVAILABLE", "RESOURCE_EXHAUSTED"}) ||
		unary.GetTimeout().AsDuration() != 2*time.Second {
		t.Errorf("Unary's policy = %v", unary)
	}
	h := query.GetHedging()
	if h.GetMaxExtraAttempts() != 2 || h.GetDelay().AsDuration() != 20*time.Millisecond ||
		!slices.Equal(h.GetNonFatalCodes(), []string{"UNAVAILABLE", "DEADLINE_EXCEEDED"}) ||
		query.GetIdempotency() != configv1.Idempotency_IDEMPOTENCY_IDEMPOTENT {
		t.Errorf("Query's policy = %v", query)
	}
	if def.GetRetry().GetMaxAttempts() != 5 || len(def.GetName()) != 1 || def.GetName()[0].GetService() != "" {
		t.Errorf("default policy = %v, want maxAttempts clamped to 5", def)
	}
	if b := m.GetTargetBudget(); b.GetKind() != configv1.BudgetKind_BUDGET_KIND_TOKEN_BUCKET || b.GetMaxTokens() != 10 || b.GetTokenRatio() != 0.1 {
		t.Errorf("target budget = %v", b)
	}
	notes := strings.Join(cfg.Notes(), "\n")
	for _, want := range []string{
		"loadBalancingConfig: ignored",
		"methodConfig[0].waitForReady: ignored",
		"methodConfig[2].retryPolicy.maxAttempts: 8 clamped to 5",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}

	// Over a real connection: RESOURCE_EXHAUSTED is retryable here, as the
	// service config says, although the default table would not retry it
	// without pushback.
	srv, conn := start(t, cfg, nil)
	client := testingv1.NewTestServiceClient(conn)
	resp, err := client.Unary(ctxTimeout(t, 10*time.Second), &testingv1.UnaryRequest{Behavior: testservice.Failing("x", 3, codes.ResourceExhausted)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetReply().GetAttempt() != 4 || srv.Service().Attempts("x") != 4 {
		t.Fatalf("answered by attempt %d, want 4", resp.GetReply().GetAttempt())
	}
}

// TestProtoRoundTrip checks that a loaded configuration's message, fed
// back through FromProto, gives the same configuration, and that
// FromProto validates.
func TestProtoRoundTrip(t *testing.T) {
	for _, file := range []string{"testdata/example.yaml", "testdata/example.json"} {
		cfg, err := config.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		again, err := config.FromProto(cfg.Proto())
		if err != nil {
			t.Fatal(err)
		}
		var a, b strings.Builder
		if err := cfg.WriteTable(&a); err != nil {
			t.Fatal(err)
		}
		if err := again.WriteTable(&b); err != nil {
			t.Fatal(err)
		}
		if a.String() != b.String() {
			t.Fatalf("%s: tables differ:\n%s\n%s", file, a.String(), b.String())
		}
	}
	bad := &configv1.Config{MethodPolicies: []*configv1.MethodPolicy{{Name: []*configv1.Name{{}}, Bulkhead: &configv1.BulkheadPolicy{}}}}
	_, err := config.FromProto(bad)
	if err == nil || !strings.Contains(err.Error(), "method_policies[0].bulkhead.limit: 0, must be at least 1") {
		t.Fatalf("FromProto(bad) = %v", err)
	}
}

// TestPolicies checks the Go policies of a file: the default, per method
// and per service, with the values and defaults the file gives.
func TestPolicies(t *testing.T) {
	cfg, err := config.Parse([]byte(`
method_policies:
  - name: [{}]
    timeout: 5s
  - name: [{service: pkg.Svc}, {service: pkg.Other, method: Get}]
    retry: {attempt_timeout: 250ms}
    hedging: null
`), config.FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	ccfg := cfg.ClientConfig()
	def, methods, services := ccfg.Default, ccfg.Methods, ccfg.Services
	if def.DefaultTimeout != 5*time.Second || ccfg.TargetBudget != nil {
		t.Fatalf("default = %+v, target budget set: %v", def, ccfg.TargetBudget != nil)
	}
	m, ok := methods["/pkg.Other/Get"]
	if !ok || len(methods) != 1 || m.Retry == nil || m.Retry.AttemptTimeout != 250*time.Millisecond || m.Retry.MaxAttempts != 0 {
		t.Fatalf("methods = %+v", methods)
	}
	if s, ok := services["pkg.Svc"]; !ok || len(services) != 1 || s.Retry == nil || s.Hedging != nil {
		t.Fatalf("services = %+v", services)
	}
}
