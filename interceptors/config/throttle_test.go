package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	"github.com/engineeringlabs/grpc-resilience/interceptors/config"
)

// TestThrottleForms loads the same throttle from YAML and JSON and checks
// the interceptors.ThrottlePolicy it becomes.
func TestThrottleForms(t *testing.T) {
	const yaml = `
method_policies:
  - name: [{}]
    throttle:
      k: 1.5
      window: 5s
      buckets: 20
      min_requests: 50
      pass_interval: 2s
      scope: target
      code_outcomes: [{code: NOT_FOUND, outcome: failure}]
`
	const json = `{"methodPolicies": [{"name": [{}], "throttle": {
		"k": 1.5, "window": "5s", "buckets": 20, "minRequests": 50, "passInterval": "2s",
		"scope": "SCOPE_TARGET", "codeOutcomes": [{"code": "NOT_FOUND", "outcome": "BREAKER_OUTCOME_FAILURE"}]}}]}`
	for _, tc := range []struct {
		name, text string
		format     config.Format
	}{{"yaml", yaml, config.FormatYAML}, {"json", json, config.FormatJSON}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tc.text), tc.format)
			if err != nil {
				t.Fatal(err)
			}
			th := cfg.ClientConfig().Default.Throttle
			if th == nil {
				t.Fatal("no throttle in the default policy")
			}
			if th.K != 1.5 || th.Window != 5*time.Second || th.Buckets != 20 || th.MinRequests != 50 || th.PassInterval != 2*time.Second || th.Scope != interceptors.ScopeTarget {
				t.Fatalf("throttle %+v", th)
			}
			if th.Table == nil || th.Table.Breaker(codes.NotFound) != classify.BreakerFailure || th.Table.Breaker(codes.Unavailable) != classify.BreakerFailure {
				t.Fatalf("table does not count NOT_FOUND and UNAVAILABLE as refusals")
			}
			if _, err := interceptors.NewClient(cfg.ClientConfig()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestThrottleProblems reports invalid throttle values under the file's
// field names, all at once.
func TestThrottleProblems(t *testing.T) {
	_, err := config.Parse([]byte(`
method_policies:
  - name: [{}]
    throttle: {k: 0.5, window: -1s, buckets: -1, min_requests: -2, scope: galaxy}
`), config.FormatYAML)
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("err %v, want a *config.Error", err)
	}
	msg := err.Error()
	for _, path := range []string{"throttle.scope"} {
		if !strings.Contains(msg, "method_policies[0]."+path) {
			t.Errorf("no problem reported at %s:\n%s", path, msg)
		}
	}
	_, err = config.Parse([]byte(`
method_policies:
  - name: [{}]
    throttle: {k: 0.5, window: -1s, buckets: -1, min_requests: -2, pass_interval: -1s}
`), config.FormatYAML)
	msg = err.Error()
	for _, path := range []string{"throttle.k", "throttle.window", "throttle.buckets", "throttle.min_requests", "throttle.pass_interval"} {
		if !strings.Contains(msg, "method_policies[0]."+path+":") {
			t.Errorf("no problem reported at %s:\n%s", path, msg)
		}
	}
}

// TestThrottleTable shows the THROTTLE column, defaults filled in, only
// when some policy has a throttle.
func TestThrottleTable(t *testing.T) {
	cfg, err := config.Parse([]byte(`
method_policies:
  - name: [{}]
    throttle: {}
  - name: [{service: pkg.Svc}]
`), config.FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := cfg.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "THROTTLE") || !strings.Contains(out, "K 2, 10s in 40 buckets, min 20  ") {
		t.Fatalf("table:\n%s", out)
	}
	cfg, err = config.Parse([]byte(`method_policies: [{name: [{}]}]`), config.FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := cfg.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "THROTTLE") {
		t.Fatalf("a THROTTLE column without throttles:\n%s", b.String())
	}
}
