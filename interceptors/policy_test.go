package interceptors_test

import (
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// fieldValues returns the Field and Value of every FieldError in err.
func fieldValues(t *testing.T, err error) map[string]any {
	t.Helper()
	got := map[string]any{}
	for _, fe := range resilience.FieldErrors(err) {
		if _, dup := got[fe.Field]; dup {
			t.Errorf("field %s reported twice in %v", fe.Field, err)
		}
		got[fe.Field] = fe.Value
	}
	return got
}

// sameValue compares two FieldError values, NaN included.
func sameValue(a, b any) bool {
	if x, ok := a.(float64); ok && math.IsNaN(x) {
		y, ok := b.(float64)
		return ok && math.IsNaN(y)
	}
	return a == b
}

// checkFields checks that err reports exactly the fields of want, each
// with its value.
func checkFields(t *testing.T, err error, want map[string]any) {
	t.Helper()
	if len(want) > 0 {
		if _, ok := errors.AsType[*resilience.FieldError](err); !ok {
			t.Errorf("err %v does not match *resilience.FieldError", err)
		}
	}
	got := fieldValues(t, err)
	for _, f := range slices.Sorted(maps.Keys(want)) {
		v, ok := got[f]
		if !ok {
			t.Errorf("no FieldError for %s in:\n%v", f, err)
			continue
		}
		if !sameValue(v, want[f]) {
			t.Errorf("%s: value %#v, want %#v", f, v, want[f])
		}
	}
	for _, f := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[f]; !ok {
			t.Errorf("unexpected FieldError %s: %v", f, got[f])
		}
	}
}

// TestValidateReportsEveryProblem checks that Validate reports every bad
// field, each as a FieldError with its path and value, all at once.
func TestValidateReportsEveryProblem(t *testing.T) {
	p := interceptors.Policy{
		Retry:          &interceptors.RetryPolicy{MaxAttempts: -2, AttemptTimeout: -time.Second, StreamBufferLimit: -1},
		Hedging:        &interceptors.HedgingPolicy{MaxExtraAttempts: -1, Delay: -time.Millisecond, Percentile: math.NaN(), MinSamples: -3, NonFatalCodes: []codes.Code{codes.OK}},
		Breaker:        &interceptors.BreakerPolicy{FailureThreshold: -1, Scope: 9},
		Bulkhead:       &interceptors.BulkheadPolicy{Limit: 0, Queue: -1, MaxWait: -time.Second, Scope: 7},
		DefaultTimeout: -time.Minute,
		Idempotency:    5,
		Fallback:       &interceptors.FallbackPolicy{Codes: []codes.Code{codes.Code(99)}},
	}
	err := p.Validate()
	if err == nil {
		t.Fatal("Validate accepted an invalid policy")
	}
	checkFields(t, err, map[string]any{
		"Hedging":                  "set", // Retry is set too
		"Retry.MaxAttempts":        -2,
		"Retry.AttemptTimeout":     -time.Second,
		"Retry.StreamBufferLimit":  -1,
		"Hedging.MaxExtraAttempts": -1,
		"Hedging.Delay":            -time.Millisecond,
		"Hedging.Percentile":       math.NaN(),
		"Hedging.MinSamples":       -3,
		"Hedging.NonFatalCodes[0]": codes.OK,
		"Breaker.FailureThreshold": -1,
		"Breaker.Scope":            interceptors.Scope(9),
		"Bulkhead.Limit":           0,
		"Bulkhead.Queue":           -1,
		"Bulkhead.MaxWait":         -time.Second,
		"Bulkhead.Scope":           interceptors.Scope(7),
		"DefaultTimeout":           -time.Minute,
		"Idempotency":              interceptors.Idempotency(5),
		"Fallback.Func":            "nil",
		"Fallback.Codes[0]":        codes.Code(99),
	})
	for _, fe := range resilience.FieldErrors(err) {
		if fe.Reason == "" {
			t.Errorf("%s has no reason", fe.Field)
		}
	}
	if err := (interceptors.Policy{}).Validate(); err != nil {
		t.Errorf("zero Policy: %v", err)
	}
	full := interceptors.Policy{Retry: &interceptors.RetryPolicy{}, Breaker: &interceptors.BreakerPolicy{}, Bulkhead: &interceptors.BulkheadPolicy{Limit: 1}}
	if err := full.Validate(); err != nil {
		t.Errorf("zero sub-policies: %v", err)
	}
}

// TestNewClientNamesWhere checks that NewClient reports bad method and
// service names, and prefixes each policy's problems with where the
// policy is.
func TestNewClientNamesWhere(t *testing.T) {
	bad := interceptors.Policy{DefaultTimeout: -1}
	_, err := interceptors.NewClient(interceptors.Config{
		Default: bad,
		Methods: map[string]interceptors.Policy{
			"pkg.Svc/M":  {},
			"/pkg.Svc/M": bad,
		},
		Services: map[string]interceptors.Policy{
			"pkg/Svc": {},
			"pkg.Svc": bad,
		},
	})
	if err == nil {
		t.Fatal("NewClient accepted a bad configuration")
	}
	checkFields(t, err, map[string]any{
		"Default.DefaultTimeout":             time.Duration(-1),
		"Methods":                            "pkg.Svc/M", // not of the form "/package.Service/Method"
		"Methods[/pkg.Svc/M].DefaultTimeout": time.Duration(-1),
		"Services":                           "pkg/Svc", // not of the form "package.Service"
		"Services[pkg.Svc].DefaultTimeout":   time.Duration(-1),
	})
}

// TestConfigValidationTable checks the FieldError paths NewClient reports
// for problems in the default, method and service policies and in MaxKeys,
// one configuration at a time, and that valid configurations pass.
func TestConfigValidationTable(t *testing.T) {
	const (
		unaryM = testingv1.TestService_Unary_FullMethodName
		idemM  = testingv1.TestService_IdempotentUnary_FullMethodName
		svc    = "grpcresilience.testing.v1.TestService"
	)
	retryP := func(r interceptors.RetryPolicy) interceptors.Policy { return interceptors.Policy{Retry: &r} }
	always := func(p interceptors.Policy) interceptors.Policy {
		p.Idempotency = interceptors.AlwaysIdempotent
		return p
	}
	hedge := interceptors.Policy{Hedging: &interceptors.HedgingPolicy{}}
	for _, tc := range []struct {
		name string
		cfg  interceptors.Config
		want map[string]any // nil: valid
	}{
		{"zero", interceptors.Config{}, nil},
		{"Default.Retry.MaxAttempts", interceptors.Config{Default: retryP(interceptors.RetryPolicy{MaxAttempts: -1})},
			map[string]any{"Default.Retry.MaxAttempts": -1}},
		{"Default.Retry.Backoff", interceptors.Config{Default: retryP(interceptors.RetryPolicy{Backoff: interceptors.Backoff{
			Kind: 42, Initial: time.Second, Max: time.Millisecond, Multiplier: 0.5, Step: -time.Second,
		}})}, map[string]any{
			"Default.Retry.Backoff.Kind":       interceptors.BackoffKind(42),
			"Default.Retry.Backoff.Max":        time.Millisecond,
			"Default.Retry.Backoff.Multiplier": 0.5,
			"Default.Retry.Backoff.Step":       -time.Second,
		}},
		{"Default.Retry.Backoff.Initial", interceptors.Config{Default: retryP(interceptors.RetryPolicy{Backoff: interceptors.Backoff{Initial: -1}})},
			map[string]any{"Default.Retry.Backoff.Initial": time.Duration(-1)}},
		{"Default.Retry.Backoff.Multiplier infinite", interceptors.Config{Default: retryP(interceptors.RetryPolicy{Backoff: interceptors.Backoff{Multiplier: math.Inf(1)}})},
			map[string]any{"Default.Retry.Backoff.Multiplier": math.Inf(1)}},
		{"Default.Retry.Jitter", interceptors.Config{Default: retryP(interceptors.RetryPolicy{Jitter: 9, JitterFactor: 1.5})},
			map[string]any{"Default.Retry.Jitter": interceptors.JitterKind(9), "Default.Retry.JitterFactor": 1.5}},
		{"Default.Retry.JitterFactor NaN", interceptors.Config{Default: retryP(interceptors.RetryPolicy{Jitter: interceptors.JitterProportional, JitterFactor: math.NaN()})},
			map[string]any{"Default.Retry.JitterFactor": math.NaN()}},
		{"Default.Breaker", interceptors.Config{Default: interceptors.Policy{Breaker: &interceptors.BreakerPolicy{
			OpenDuration: -time.Second, OpenDurationMultiplier: 0.5,
		}}}, map[string]any{
			"Default.Breaker.OpenDuration":           -time.Second,
			"Default.Breaker.OpenDurationMultiplier": 0.5,
		}},
		{"Default.Breaker.MaxOpenDuration", interceptors.Config{Default: interceptors.Policy{Breaker: &interceptors.BreakerPolicy{
			OpenDuration: time.Minute, OpenDurationMultiplier: 2, MaxOpenDuration: time.Second,
		}}}, map[string]any{"Default.Breaker.MaxOpenDuration": time.Second}},
		{"Default hedging any method", interceptors.Config{Default: hedge}, nil},
		{"Default.RateLimit", interceptors.Config{Default: interceptors.Policy{RateLimit: &interceptors.RateLimitPolicy{Rate: 2e9, Burst: -1, Scope: 7}}},
			map[string]any{"Default.RateLimit.Rate": 2e9, "Default.RateLimit.Burst": -1, "Default.RateLimit.Scope": interceptors.Scope(7)}},
		{"Default.RateLimit.Rate zero", interceptors.Config{Default: interceptors.Policy{RateLimit: &interceptors.RateLimitPolicy{}}},
			map[string]any{"Default.RateLimit.Rate": 0.0}},
		{"Default hedging never idempotent", interceptors.Config{Default: interceptors.Policy{
			Hedging: &interceptors.HedgingPolicy{}, Idempotency: interceptors.NeverIdempotent,
		}}, map[string]any{"Default.Hedging": "set"}},
		{"Methods[].Hedging.Delay", interceptors.Config{Methods: map[string]interceptors.Policy{
			idemM: {Hedging: &interceptors.HedgingPolicy{Delay: -time.Millisecond}},
		}}, map[string]any{"Methods[" + idemM + "].Hedging.Delay": -time.Millisecond}},
		{"Methods[].Retry and Hedging", interceptors.Config{Methods: map[string]interceptors.Policy{
			idemM: {Hedging: &interceptors.HedgingPolicy{}, Retry: &interceptors.RetryPolicy{}},
		}}, map[string]any{"Methods[" + idemM + "].Hedging": "set"}},
		{"Methods bad name", interceptors.Config{Methods: map[string]interceptors.Policy{"Unary": {}}},
			map[string]any{"Methods": "Unary"}},
		{"Methods[] hedging a non-idempotent method", interceptors.Config{Methods: map[string]interceptors.Policy{unaryM: hedge}},
			map[string]any{"Methods[" + unaryM + "].Hedging": "set"}},
		{"Methods[] hedging an unregistered method", interceptors.Config{Methods: map[string]interceptors.Policy{"/pkg.Svc/M": hedge}},
			map[string]any{"Methods[/pkg.Svc/M].Hedging": "set"}},
		{"Methods[] attempt timeout on a non-idempotent method", interceptors.Config{Methods: map[string]interceptors.Policy{
			unaryM: retryP(interceptors.RetryPolicy{AttemptTimeout: time.Second}),
		}}, map[string]any{"Methods[" + unaryM + "].Retry.AttemptTimeout": time.Second}},
		{"Methods[] opted in", interceptors.Config{Methods: map[string]interceptors.Policy{
			unaryM:       always(hedge),
			"/pkg.Svc/M": always(retryP(interceptors.RetryPolicy{AttemptTimeout: time.Second})),
		}}, nil},
		{"Methods[] idempotent by descriptor", interceptors.Config{Methods: map[string]interceptors.Policy{
			idemM: hedge,
			testingv1.TestService_Query_FullMethodName: retryP(interceptors.RetryPolicy{AttemptTimeout: time.Second}),
		}}, nil},
		{"Services[].Bulkhead", interceptors.Config{Services: map[string]interceptors.Policy{
			svc: {Bulkhead: &interceptors.BulkheadPolicy{Limit: 0, Queue: -1}},
		}}, map[string]any{"Services[" + svc + "].Bulkhead.Limit": 0, "Services[" + svc + "].Bulkhead.Queue": -1}},
		{"Services bad name", interceptors.Config{Services: map[string]interceptors.Policy{"/" + svc + "/": {}}},
			map[string]any{"Services": "/" + svc + "/"}},
		{"Services empty name", interceptors.Config{Services: map[string]interceptors.Policy{"": {}}},
			map[string]any{"Services": ""}},
		{"Services[] with an idempotent method", interceptors.Config{Services: map[string]interceptors.Policy{svc: hedge}}, nil},
		{"Services[] hedging an unregistered service", interceptors.Config{Services: map[string]interceptors.Policy{"pkg.Svc": hedge}},
			map[string]any{"Services[pkg.Svc].Hedging": "set"}},
		{"Services[] attempt timeout on an unregistered service", interceptors.Config{Services: map[string]interceptors.Policy{
			"pkg.Svc": retryP(interceptors.RetryPolicy{AttemptTimeout: time.Second}),
		}}, map[string]any{"Services[pkg.Svc].Retry.AttemptTimeout": time.Second}},
		{"MaxKeys", interceptors.Config{MaxKeys: -1}, map[string]any{"MaxKeys": -1}},
		{"MaxKeys positive", interceptors.Config{MaxKeys: 1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := interceptors.NewClient(tc.cfg)
			if tc.want == nil {
				if err != nil || c == nil || tc.cfg.Validate() != nil {
					t.Fatalf("NewClient: %v; Validate: %v", err, tc.cfg.Validate())
				}
				return
			}
			if err == nil || c != nil {
				t.Fatalf("NewClient accepted the configuration (client %v)", c)
			}
			checkFields(t, err, tc.want)
			checkFields(t, tc.cfg.Validate(), tc.want) // the same problems, without building
		})
	}
}

// TestNewClientIdempotencyReason checks that the refusal to repeat a
// non-idempotent method says how to opt in.
func TestNewClientIdempotencyReason(t *testing.T) {
	const m = testingv1.TestService_Unary_FullMethodName
	r := fastRetry(3)
	r.AttemptTimeout = time.Second
	for _, p := range []interceptors.Policy{{Hedging: hedging(1, 0)}, {Retry: r}} {
		_, err := interceptors.NewClient(interceptors.Config{Methods: map[string]interceptors.Policy{m: p}})
		fes := resilience.FieldErrors(err)
		if len(fes) != 1 {
			t.Fatalf("%d problems, want 1: %v", len(fes), err)
		}
		if !strings.Contains(fes[0].Reason, "AlwaysIdempotent") {
			t.Errorf("%s: reason %q does not say how to opt in", fes[0].Field, fes[0].Reason)
		}
	}
}

// TestNames checks the String methods.
func TestNames(t *testing.T) {
	for got, want := range map[string]string{
		interceptors.ScopeTarget.String():             "target",
		interceptors.NeverIdempotent.String():         "never",
		interceptors.AlwaysIdempotent.String():        "always",
		interceptors.FromDescriptor.String():          "from-descriptor",
		interceptors.Idempotency(7).String():          "Idempotency(7)",
		interceptors.PatternHedging.String():          "hedging",
		interceptors.EventBreakerRejected.String():    "breaker-rejected",
		interceptors.EventKind(0).String():            "EventKind(0)",
		interceptors.Pattern(9).String():              "Pattern(9)",
		interceptors.EventBreakerStateChange.String(): "breaker-state-change",
		interceptors.EventEvicted.String():            "evicted",
		interceptors.EventOverflow.String():           "overflow",
		interceptors.EventKind(99).String():           "EventKind(99)",
		interceptors.Scope(3).String():                "Scope(3)",
		interceptors.BackoffExponential.String():      "exponential",
		interceptors.BackoffDecorrelatedV2.String():   "decorrelated-v2",
		interceptors.BackoffKind(9).String():          "BackoffKind(9)",
		interceptors.JitterFull.String():              "full",
		interceptors.JitterProportional.String():      "proportional",
		interceptors.JitterKind(9).String():           "JitterKind(9)",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
