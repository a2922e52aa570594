package config

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	configv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/config/v1"
)

// TestShortForms loads durations and enum values written in their short
// forms (Go durations, lower-case names without the enum's prefix), in
// their proto3 JSON forms, and bad values, in YAML and JSON, at several
// depths of the schema (a map value included). Good values must load to
// the same message whatever the form; a bad one must be a problem that
// names its path and its value and lists the valid short names.
func TestShortForms(t *testing.T) {
	// policy is a YAML document of one default policy with the given
	// fields; server one with the given server section.
	policy := func(fields string) string { return "method_policies:\n  - name: [{}]\n    " + fields + "\n" }
	for _, tc := range []struct {
		name string
		doc  string
		json bool
		// check inspects a loaded configuration.
		check func(m *configv1.Config) bool
		// path and want: the one problem expected, with words its message
		// must hold.
		path string
		want []string
	}{
		{name: "go duration ms", doc: policy("timeout: 500ms"),
			check: func(m *configv1.Config) bool { return dur(m.MethodPolicies[0].Timeout) == 500*time.Millisecond }},
		{name: "go duration compound", doc: policy("timeout: 1m30s"),
			check: func(m *configv1.Config) bool { return dur(m.MethodPolicies[0].Timeout) == 90*time.Second }},
		{name: "go duration hours and fraction", doc: policy("timeout: 1.5h"),
			check: func(m *configv1.Config) bool { return dur(m.MethodPolicies[0].Timeout) == 90*time.Minute }},
		{name: "go duration micro", doc: policy("timeout: 1µs"),
			check: func(m *configv1.Config) bool { return dur(m.MethodPolicies[0].Timeout) == time.Microsecond }},
		{name: "go duration largest", doc: policy("timeout: 9223372036854775807ns"),
			check: func(m *configv1.Config) bool { return dur(m.MethodPolicies[0].Timeout) == maxDuration }},
		{name: "protojson duration", doc: policy("timeout: 0.5s"),
			check: func(m *configv1.Config) bool { return dur(m.MethodPolicies[0].Timeout) == 500*time.Millisecond }},
		{name: "protojson duration nanos", doc: policy("timeout: 0.000000001s"),
			check: func(m *configv1.Config) bool { return dur(m.MethodPolicies[0].Timeout) == time.Nanosecond }},
		{name: "short enums", doc: policy("retry: {backoff: {kind: exponential, initial: 50ms, max: 1s}, jitter: proportional, jitter_factor: 0.1, budget: {kind: token_bucket, max_tokens: 5, token_ratio: 0.1}, code_rules: [{code: ABORTED, rule: if_attempt_timeout}]}\n    idempotency: not_idempotent"),
			check: func(m *configv1.Config) bool {
				r := m.MethodPolicies[0].Retry
				return r.Backoff.Kind == configv1.BackoffKind_BACKOFF_KIND_EXPONENTIAL && dur(r.Backoff.Initial) == 50*time.Millisecond &&
					r.Jitter == configv1.JitterKind_JITTER_KIND_PROPORTIONAL && r.Budget.Kind == configv1.BudgetKind_BUDGET_KIND_TOKEN_BUCKET &&
					r.CodeRules[0].Rule == configv1.RetryRule_RETRY_RULE_IF_ATTEMPT_TIMEOUT &&
					m.MethodPolicies[0].Idempotency == configv1.Idempotency_IDEMPOTENCY_NOT_IDEMPOTENT
			}},
		{name: "short enum with digits", doc: policy("retry: {backoff: {kind: decorrelated_jitter_v2, initial: 10ms}}"),
			check: func(m *configv1.Config) bool {
				return m.MethodPolicies[0].Retry.Backoff.Kind == configv1.BackoffKind_BACKOFF_KIND_DECORRELATED_JITTER_V2
			}},
		{name: "breaker short forms", doc: policy("breaker: {window_type: time, window_period: 2m, failure_rate_threshold: 50, scope: target, code_outcomes: [{code: NOT_FOUND, outcome: ignored}]}"),
			check: func(m *configv1.Config) bool {
				b := m.MethodPolicies[0].Breaker
				return b.WindowType == configv1.WindowType_WINDOW_TYPE_TIME && dur(b.WindowPeriod) == 2*time.Minute &&
					b.Scope == configv1.Scope_SCOPE_TARGET && b.CodeOutcomes[0].Outcome == configv1.BreakerOutcome_BREAKER_OUTCOME_IGNORED
			}},
		{name: "server short forms and a map value", doc: "server:\n  bulkhead: {limit: 4, partition_by: header, header: tenant, adaptive: {kind: gradient, window: 1m}}\n  chaos: {methods: {/a.B/: {latency: 1ms, latency_max: 2ms}}}\n",
			check: func(m *configv1.Config) bool {
				s := m.Server
				return s.Bulkhead.PartitionBy == configv1.Partition_PARTITION_HEADER && s.Bulkhead.Adaptive.Kind == configv1.AdaptiveKind_ADAPTIVE_KIND_GRADIENT &&
					dur(s.Bulkhead.Adaptive.Window) == time.Minute && dur(s.Chaos.Methods["/a.B/"].LatencyMax) == 2*time.Millisecond
			}},
		{name: "rate limit short forms", doc: policy("rate_limit: {rate: 0.5, wait: true, scope: service}") +
			"server:\n  rate_limit: {rate: 10, partition_by: peer, methods: {pkg.Svc: {rate: 1}, /pkg.Svc/Get: {}}}\n",
			check: func(m *configv1.Config) bool {
				c, s := m.MethodPolicies[0].RateLimit, m.Server.RateLimit
				return c.Rate == 0.5 && c.Wait && c.Scope == configv1.Scope_SCOPE_SERVICE &&
					s.PartitionBy == configv1.Partition_PARTITION_PEER && s.Methods["pkg.Svc"].GetRate() == 1 && s.Methods["/pkg.Svc/Get"] != nil
			}},
		{name: "json rate limit long forms", json: true,
			doc: `{"methodPolicies": [{"name": [{}], "rateLimit": {"rate": "2.5", "scope": "SCOPE_TARGET"}}], "server": {"rateLimit": {"rate": 1, "partitionBy": "PARTITION_HEADER", "header": "x-caller", "noPushback": true}}}`,
			check: func(m *configv1.Config) bool {
				c, s := m.MethodPolicies[0].RateLimit, m.Server.RateLimit
				return c.Rate == 2.5 && c.Scope == configv1.Scope_SCOPE_TARGET &&
					s.PartitionBy == configv1.Partition_PARTITION_HEADER && s.Header == "x-caller" && s.NoPushback
			}},
		{name: "long enums", doc: policy("retry: {backoff: {kind: BACKOFF_KIND_EXPONENTIAL, initial: 0.050s}, jitter: JITTER_KIND_NONE}"),
			check: func(m *configv1.Config) bool {
				r := m.MethodPolicies[0].Retry
				return r.Backoff.Kind == configv1.BackoffKind_BACKOFF_KIND_EXPONENTIAL && r.Jitter == configv1.JitterKind_JITTER_KIND_NONE
			}},
		{name: "enum number", doc: policy("retry: {backoff: {kind: 3, initial: 1s}}"),
			check: func(m *configv1.Config) bool {
				return m.MethodPolicies[0].Retry.Backoff.Kind == configv1.BackoffKind_BACKOFF_KIND_EXPONENTIAL
			}},
		{name: "json short forms", json: true,
			doc: `{"methodPolicies": [{"name": [{}], "timeout": "1m30s", "retry": {"backoff": {"kind": "constant", "delay": "250ms"}}}]}`,
			check: func(m *configv1.Config) bool {
				p := m.MethodPolicies[0]
				return dur(p.Timeout) == 90*time.Second && p.Retry.Backoff.Kind == configv1.BackoffKind_BACKOFF_KIND_CONSTANT && dur(p.Retry.Backoff.Delay) == 250*time.Millisecond
			}},
		{name: "json long forms", json: true,
			doc: `{"methodPolicies": [{"name": [{}], "timeout": "90s", "retry": {"backoff": {"kind": "BACKOFF_KIND_CONSTANT", "delay": "0.250s"}}}]}`,
			check: func(m *configv1.Config) bool {
				p := m.MethodPolicies[0]
				return dur(p.Timeout) == 90*time.Second && p.Retry.Backoff.Kind == configv1.BackoffKind_BACKOFF_KIND_CONSTANT && dur(p.Retry.Backoff.Delay) == 250*time.Millisecond
			}},

		{name: "parsecs", doc: policy("timeout: 5 parsecs"),
			path: "method_policies[0].timeout", want: []string{`"5 parsecs"`, `"500ms"`, `"1m30s"`}},
		{name: "json parsecs", json: true, doc: `{"method_policies": [{"name": [{}], "timeout": "5 parsecs"}]}`,
			path: "method_policies[0].timeout", want: []string{`"5 parsecs"`, `"500ms"`}},
		{name: "duration number", doc: policy("timeout: 30"),
			path: "method_policies[0].timeout", want: []string{"30, must be a duration", `"1m30s"`}},
		{name: "duration beyond time.Duration", doc: policy("timeout: 2562048h"),
			path: "method_policies[0].timeout", want: []string{`"2562048h"`, "2562047h"}},
		{name: "protojson beyond time.Duration", doc: policy("timeout: 315576000000s"),
			path: "method_policies[0].timeout", want: []string{"at most 2562047h47m16.854775807s"}},
		{name: "negative go duration", doc: policy("timeout: -1m"),
			path: "method_policies[0].timeout", want: []string{"-1m0s, must not be negative"}},
		{name: "expo", doc: policy("retry: {backoff: {kind: expo}}"),
			path: "method_policies[0].retry.backoff.kind",
			want: []string{`"expo"`, "must be one of constant, linear, exponential, fibonacci, decorrelated_jitter, decorrelated_jitter_v2"}},
		{name: "json expo", json: true, doc: `{"method_policies": [{"name": [{}], "retry": {"backoff": {"kind": "expo"}}}]}`,
			path: "method_policies[0].retry.backoff.kind", want: []string{`"expo"`, "constant, linear, exponential"}},
		{name: "upper-case short name", doc: policy("retry: {jitter: NONE}"),
			path: "method_policies[0].retry.jitter", want: []string{`"NONE"`, "must be one of none, full, equal, proportional"}},
		{name: "short name of another enum", doc: "server: {bulkhead: {limit: 1, partition_by: service}}\n",
			path: "server.bulkhead.partition_by", want: []string{`"service"`, "must be one of none, method, header"}},
		{name: "unknown partition of the rate limit", doc: "server: {rate_limit: {rate: 1, partition_by: tenant}}\n",
			path: "server.rate_limit.partition_by", want: []string{`"tenant"`, "must be one of none, method, header, peer"}},
		{name: "unknown scope of the rate limit", doc: policy("rate_limit: {rate: 1, scope: caller}"),
			path: "method_policies[0].rate_limit.scope", want: []string{`"caller"`, "must be one of method, service, target"}},
		{name: "rate limit rate as text", doc: policy("rate_limit: {rate: fast}"),
			path: "method_policies[0].rate_limit.rate", want: []string{`"fast"`, "must be a number"}},
		{name: "enum number out of range", doc: policy("idempotency: 1e10"),
			path: "method_policies[0].idempotency", want: []string{"10000000000, must be one of idempotent, not_idempotent"}},
		{name: "enum value missing", doc: policy("retry: {code_rules: [{code: ABORTED}]}"),
			path: "method_policies[0].retry.code_rules[0].rule", want: []string{"unset, must be one of never, always, if_idempotent, if_pushback, if_attempt_timeout"}},
		{name: "target budget unset kind", doc: "target_budget: {kind: unspecified}\n",
			path: "target_budget.kind", want: []string{"unset, must be one of ratio, token_bucket, none"}},
		{name: "unknown enum number in a kind", doc: policy("breaker: {window_type: 7}"),
			path: "method_policies[0].breaker.window_type", want: []string{"7, must be one of count, time"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := FormatYAML
			if tc.json {
				f = FormatJSON
			}
			cfg, err := Parse([]byte(tc.doc), f)
			if tc.check != nil {
				if err != nil {
					t.Fatalf("Parse:\n%s\n= %v", tc.doc, err)
				}
				if m := cfg.Proto(); !tc.check(m) {
					t.Fatalf("Parse:\n%s\nloaded %v", tc.doc, m)
				}
				return
			}
			var cerr *Error
			if !errors.As(err, &cerr) || len(cerr.Problems) != 1 {
				t.Fatalf("Parse:\n%s\n= %v, want one problem", tc.doc, err)
			}
			p := cerr.Problems[0]
			if p.Path != tc.path {
				t.Errorf("path = %q, want %q (%v)", p.Path, tc.path, p)
			}
			for _, w := range tc.want {
				if !strings.Contains(p.Message, w) {
					t.Errorf("message %q lacks %q", p.Message, w)
				}
			}
		})
	}
}

func dur(d *durationpb.Duration) time.Duration { return d.AsDuration() }

// TestEnumShortNames checks the short names of every enum of the schema:
// each value has the enum's prefix, the short names of an enum are
// distinct and name no other value by a full name, and none is a word that
// YAML 1.1 reads as a boolean (so that `jitter: none` stays a string).
func TestEnumShortNames(t *testing.T) {
	fd := configv1.File_grpcresilience_config_v1_config_proto
	enums := fd.Enums()
	if enums.Len() < 10 {
		t.Fatalf("found %d enums", enums.Len())
	}
	yamlBools := []string{"y", "yes", "n", "no", "true", "false", "on", "off"}
	for i := 0; i < enums.Len(); i++ {
		ed := enums.Get(i)
		seen := map[string]bool{}
		vals := ed.Values()
		for j := 0; j < vals.Len(); j++ {
			v := vals.Get(j)
			if !strings.HasPrefix(string(v.Name()), enumPrefix(ed)) {
				t.Errorf("%s: %s lacks the prefix %s", ed.Name(), v.Name(), enumPrefix(ed))
			}
			s := shortName(v)
			if seen[s] || slices.Contains(yamlBools, s) || s != strings.ToLower(s) || s == "" {
				t.Errorf("%s: bad short name %q for %s", ed.Name(), s, v.Name())
			}
			seen[s] = true
			if got := enumValue(ed, s); got != v {
				t.Errorf("%s: enumValue(%q) = %v, want %v", ed.Name(), s, got, v.Name())
			}
			if got := enumValue(ed, string(v.Name())); got != v {
				t.Errorf("%s: enumValue(%q) = %v", ed.Name(), v.Name(), got)
			}
		}
		if !strings.Contains(shortNames(ed), ", ") || strings.Contains(shortNames(ed), "unspecified") {
			t.Errorf("%s: shortNames = %q", ed.Name(), shortNames(ed))
		}
	}
	if got := short(configv1.BackoffKind_BACKOFF_KIND_DECORRELATED_JITTER_V2); got != "decorrelated_jitter_v2" {
		t.Errorf("short = %q", got)
	}
	if got := enumText(protoreflect.Enum(configv1.Scope(9))); got != "9" {
		t.Errorf("enumText of an unknown number = %q", got)
	}
}

// FuzzParseDuration checks the reading of durations as files write them:
// it never panics; what it accepts is a proto3 JSON duration that protojson
// reads; a proto3 JSON duration is kept as written; and a Go duration
// converts to exactly the time.Duration time.ParseDuration gives, whatever
// its size or sign.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{
		"500ms", "1m30s", "0.5s", "1.5h", "-2h45m", "1µs", "1us", "0", "-0", "+5s", ".5s", "5.s",
		"9223372036854775807ns", "9223372036854775808ns", "-9223372036854775808ns", "2562047h47m16.854775807s",
		"2562048h", "315576000000s", "315576000001s", "-315576000000.999999999s", "0.0000000001s",
		"1e3s", "5 parsecs", "", "s", "ms", "1.5", "18446744073709551616h", "0.000000001h",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		text, ok := parseDuration(s)
		goD, goErr := time.ParseDuration(s)
		if !ok {
			if goErr == nil && len(s) <= 64 {
				t.Fatalf("parseDuration(%q) rejected what time.ParseDuration reads as %v", s, goD)
			}
			return
		}
		var d durationpb.Duration
		if err := protojson.Unmarshal([]byte(strconv.Quote(text)), &d); err != nil {
			t.Fatalf("parseDuration(%q) = %q, which protojson rejects: %v", s, text, err)
		}
		if protojson.Unmarshal([]byte(strconv.Quote(s)), new(durationpb.Duration)) == nil {
			if text != s {
				t.Fatalf("parseDuration(%q) = %q, want the proto3 JSON form kept", s, text)
			}
			return
		}
		if goErr != nil {
			t.Fatalf("parseDuration(%q) = %q, but neither protojson nor time.ParseDuration reads it", s, text)
		}
		if got, fits := toDuration(&d); !fits || got != goD {
			t.Fatalf("parseDuration(%q) = %q = %v (fits %v), want %v", s, text, got, fits, goD)
		}
	})
}

// FuzzFormatDuration checks that every time.Duration, the extremes
// included, prints in a proto3 JSON form that reads back exactly.
func FuzzFormatDuration(f *testing.F) {
	for _, d := range []int64{0, 1, -1, 1e9, -1e9, 1e9 + 1, 500e6, math.MaxInt64, math.MinInt64, math.MinInt64 + 1} {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, n int64) {
		td := time.Duration(n)
		text := formatDuration(td)
		var d durationpb.Duration
		if err := protojson.Unmarshal([]byte(strconv.Quote(text)), &d); err != nil {
			t.Fatalf("formatDuration(%d) = %q, which protojson rejects: %v", n, text, err)
		}
		if got, ok := toDuration(&d); !ok || got != td {
			t.Fatalf("formatDuration(%d) = %q, which reads back as %v (ok %v)", n, text, got, ok)
		}
	})
}
