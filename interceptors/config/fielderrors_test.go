package config

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
)

// TestGoProblems checks the translation of the Go types' FieldErrors to
// the file's paths through the tables alone: nested fields, indexes and
// map keys, FieldErrors joined at any depth, a field the table lacks
// (reported at its longest known prefix), a table message, a problem the
// schema reported already (left out), and an error that is no
// FieldError. The reasons are deliberately unlike any the Go types write:
// nothing depends on their text.
func TestGoProblems(t *testing.T) {
	fe := func(field string, v any, why string) error {
		return &resilience.FieldError{Field: field, Value: v, Reason: why}
	}
	var c conv
	c.ps.add("method_policies[1].retry.max_attempts", 0, "reported by the schema")
	c.goProblems("method_policies[1]", errors.Join(
		fe("Retry.MaxAttempts", -1, "r1"),
		errors.Join(fe("Breaker.WindowType", "x", "r2"), fe("Breaker.MaxOpenDuration", time.Second, "below OpenDuration")),
		fe("Hedging.NonFatalCodes[2]", 0, "r3"),
		fe("Hedging", "set", "r4"),
		fe("Retry.Backoff.Frobs[3].Deep", 1.5, "r5"),
		fmt.Errorf("wrapped: %w", fe("DefaultTimeout", -time.Second, "r6")),
	), policyFields, nil)
	c.goProblems("method_policies[2]", fe("Retry.Backoff.Initial", time.Duration(0), "r7"), policyFields,
		map[string]fileField{"Retry.Backoff.Initial": {path: "retry.backoff.delay"}})
	c.goProblems("server", errors.Join(
		fe("Exempt[3]", "a/b", "r8"),
		fe("Chaos.Faults.Methods[/pkg.Svc/Get].LatencyMax", time.Millisecond, "below Latency"),
		fe("Chaos.Faults.All.ErrorRate", 2.0, "r9"),
		fe("Bulkhead.Limit", 0, "r10"),
		fe("Unknown", 1, "r11"),
	), serverFields, nil)
	c.goProblems("server", errors.New("not a field error"), serverFields, nil)

	var got []string
	for _, p := range c.ps {
		got = append(got, p.String())
	}
	want := []string{
		"method_policies[1].retry.max_attempts: 0, reported by the schema",
		`method_policies[1].breaker.window_type: "x", r2`,
		"method_policies[1].breaker.open_backoff.max: 1s, below open_duration",
		"method_policies[1].hedging.non_fatal_codes[2]: 0, r3",
		"method_policies[1].hedging: set together with retry; they are alternatives per method (gRFC A6), set one",
		"method_policies[1].retry.backoff: Frobs[3].Deep: 1.5, r5",
		"method_policies[1].timeout: -1s, r6",
		"method_policies[2].retry.backoff.delay: 0s, r7",
		`server.exempt[3]: "a/b", r8`,
		`server.chaos.methods["/pkg.Svc/Get"].latency_max: 1ms, below latency`,
		"server.chaos.all.error_rate: 2, r9",
		"server.bulkhead.limit: 0, r10",
		"server: Unknown: 1, r11",
		"server: not a field error",
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%q\nwant:\n%q", got, want)
	}
}

// TestSchemaDefaultsSurviveConversion checks that the schema's defaults,
// which differ from the Go types' zero values, reach the Go policy: an
// unset backoff max is no cap, an unset linear step a constant wait, an
// unset constant delay a retry at once, a proportional jitter of factor 0
// none, and an open backoff's multiplier defaults to 2.
func TestSchemaDefaultsSurviveConversion(t *testing.T) {
	cfg, err := Parse([]byte(`
method_policies:
  - name: [{service: a.A}]
    retry: {backoff: {kind: exponential, initial: 1s}, jitter: proportional}
  - name: [{service: a.B}]
    retry: {backoff: {kind: linear, initial: 2s, max: 3s}}
  - name: [{service: a.C}]
    retry: {backoff: {kind: constant}}
    breaker: {open_duration: 5s, open_backoff: {max: 1m}}
`), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.ClientConfig().Services
	a, b, c := s["a.A"], s["a.B"], s["a.C"]
	if got := a.Retry.Backoff; got.Kind != interceptors.BackoffExponential || got.Max != maxDuration || got.Multiplier != 2 {
		t.Errorf("exponential without max = %+v, want no cap", got)
	}
	if a.Retry.Jitter != interceptors.JitterNone {
		t.Errorf("proportional jitter of factor 0 = %v, want none", a.Retry.Jitter)
	}
	if got := b.Retry.Backoff; got.Kind != interceptors.BackoffConstant || got.Initial != 2*time.Second {
		t.Errorf("linear without step = %+v, want a constant 2s", got)
	}
	if got := c.Retry.Backoff; got.Kind != interceptors.BackoffConstant || got.Initial != time.Nanosecond {
		t.Errorf("constant without delay = %+v, want 1ns", got)
	}
	if br := c.Breaker; br.OpenDuration != 5*time.Second || br.MaxOpenDuration != time.Minute || br.OpenDurationMultiplier != 2 {
		t.Errorf("breaker = %+v", br)
	}
	for name, p := range s {
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
