package interceptors_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
)

// TestValidateReportsEveryProblem checks that Validate names every bad
// field with its value, all at once.
func TestValidateReportsEveryProblem(t *testing.T) {
	p := interceptors.Policy{
		Retry:          &interceptors.RetryPolicy{MaxAttempts: -2, AttemptTimeout: -time.Second},
		Hedging:        &interceptors.HedgingPolicy{MaxExtraAttempts: -1, Delay: -time.Millisecond, Percentile: math.NaN(), MinSamples: -3, NonFatalCodes: []codes.Code{codes.OK}},
		Breaker:        &interceptors.BreakerPolicy{Config: breaker.Config{FailureThreshold: -1}, Scope: 9},
		Bulkhead:       &interceptors.BulkheadPolicy{Limit: 0, Queue: -1, MaxWait: -time.Second, Scope: 7},
		DefaultTimeout: -time.Minute,
		Idempotent:     5,
		Fallback:       &interceptors.FallbackPolicy{Codes: []codes.Code{codes.Code(99)}},
	}
	err := p.Validate()
	if err == nil {
		t.Fatal("Validate accepted an invalid policy")
	}
	msg := err.Error()
	for _, want := range []string{
		"Retry and Hedging",
		"Retry.MaxAttempts: -2", "Retry.AttemptTimeout: -1s",
		"Hedging.MaxExtraAttempts: -1", "Hedging.Delay: -1ms", "Hedging.Percentile: NaN", "Hedging.MinSamples: -3", "Hedging.NonFatalCodes[0]: OK",
		"Breaker.Config:", "FailureThreshold", "Breaker.Scope: Scope(9)",
		"Bulkhead.Limit: 0", "Bulkhead.Queue: -1", "Bulkhead.MaxWait: -1s", "Bulkhead.Scope: Scope(7)",
		"DefaultTimeout: -1m0s", "Idempotent: Idempotency(5)",
		"Fallback.Func: nil", "Fallback.Codes[0]: Code(99)",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
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
// service names, duplicates, and the policy each problem is in.
func TestNewClientNamesWhere(t *testing.T) {
	bad := interceptors.Policy{DefaultTimeout: -1}
	_, err := interceptors.NewClient(bad,
		interceptors.WithMethodPolicy("pkg.Svc/M", interceptors.Policy{}),
		interceptors.WithMethodPolicy("/pkg.Svc/M", bad),
		interceptors.WithServicePolicy("pkg/Svc", interceptors.Policy{}),
		interceptors.WithServicePolicy("pkg.Svc", interceptors.Policy{}),
		interceptors.WithServicePolicy("pkg.Svc", interceptors.Policy{}),
	)
	if err == nil {
		t.Fatal("NewClient accepted a bad configuration")
	}
	for _, want := range []string{
		"default policy: DefaultTimeout: -1ns",
		`method "pkg.Svc/M": not of the form`,
		"method /pkg.Svc/M: DefaultTimeout",
		`service "pkg/Svc": not of the form`,
		"WithServicePolicy: pkg.Svc: set twice",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

// TestNames checks the String methods.
func TestNames(t *testing.T) {
	for got, want := range map[string]string{
		interceptors.ScopeTarget.String():               "target",
		interceptors.NotIdempotent.String():             "not-idempotent",
		interceptors.PatternHedging.String():            "hedging",
		interceptors.EventBreakerRejected.String():      "breaker-rejected",
		interceptors.EventKind(0).String():              "EventKind(0)",
		interceptors.Pattern(9).String():                "Pattern(9)",
		interceptors.EventBreakerStateChange.String():   "breaker-state-change",
		interceptors.IdempotencyFromDescriptor.String(): "from-descriptor",
		interceptors.Scope(3).String():                  "Scope(3)",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
