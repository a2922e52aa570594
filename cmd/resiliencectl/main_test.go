package main

import (
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestRun checks the exit codes and outputs: a valid file prints its
// table, an invalid one every problem and status 1, bad usage status 2.
func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name        string
		args        []string
		code        int
		out, errOut []string
	}{
		{"yaml", []string{"../../interceptors/config/testdata/example.yaml"}, 0,
			[]string{"NAME", "grpcresilience.testing.v1.TestService/Unary", "constant 10ms", "50% failed of last 20 calls, open 10s..2m0s x2", "16 in flight, queue 8 for 100ms", "token_bucket of 100", "bulkhead 64 per method, adaptive aimd",
				"RATE LIMIT", "200/s burst 20, wait, per service", "rate limit per x-caller: 100/s burst 100, /grpcresilience.testing.v1.TestService/Query 20/s burst 5"}, nil},
		{"rate limits", []string{"../../interceptors/config/testdata/good/ratelimit.yaml"}, 0,
			[]string{"0.5/s burst 3, wait, per target", "50/s burst 50", "shop.v1.Probe unlimited", "bulkhead 32 per peer"}, nil},
		{"invalid rate limits", []string{"../../interceptors/config/testdata/bad/ratelimit.yaml"}, 1, nil,
			[]string{"method_policies[0].rate_limit.rate: -1, must be a positive number of attempts per second",
				"method_policies[0].rate_limit.burst: -2, must not be negative",
				"server.rate_limit.partition_by: 9, must be one of none, method, header, peer"}},
		{"short forms", []string{"testdata/short.yaml"}, 0,
			[]string{"decorrelated_jitter_v2 250ms..1m30s, equal jitter", "1m30s", "last 2m0s, open 45s", "adaptive gradient"}, nil},
		{"invalid short forms", []string{"../../interceptors/config/testdata/bad/unknown.yaml"}, 1, nil,
			[]string{`method_policies[0].retry.backoff.kind: "expo", must be one of constant, linear, exponential, fibonacci, decorrelated_jitter, decorrelated_jitter_v2`,
				`method_policies[0].timeout: "5 parsecs", must be a duration such as "500ms", "1.5s" or "1m30s"`}},
		{"service config", []string{"../../interceptors/config/testdata/grpc_service_config.json"}, 0,
			[]string{"hedging", "1+2", "exponential 10ms..100ms x2, full jitter"}, []string{"note: methodConfig[2].retryPolicy.maxAttempts: 8 clamped to 5"}},
		{"invalid", []string{"-format", "json", "../../interceptors/config/testdata/bad/retry.json"}, 1,
			nil, []string{"../../interceptors/config/testdata/bad/retry.json: 12 problems:", "method_policies[2].retry.max_attempts: 0, must be at least 1"}},
		{"missing file", []string{"nope.yaml"}, 1, nil, []string{"nope.yaml"}},
		{"no file", nil, 2, nil, []string{"usage:"}},
		{"bad format", []string{"-format", "toml", "x"}, 2, nil, []string{`format "toml"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut strings.Builder
			if code := run(tc.args, &out, &errOut); code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.code, errOut.String())
			}
			for _, w := range tc.out {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tc.errOut {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut.String())
				}
			}
		})
	}
}
