package breaker

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // the fields reported, in order; none: valid
	}{
		{"zero config", Config{}, nil},
		{"seed example", Config{FailureThreshold: 5, Timeout: 60 * time.Second, SuccessThreshold: 2}, nil},
		{"full windowed config", Config{WindowType: TimeWindow, WindowPeriod: time.Minute, WindowBuckets: 60, FailureRateThreshold: 50, SlowCallRateThreshold: 80, SlowCallDuration: time.Second, MinimumCalls: 20, MaxHalfOpenProbes: 3, ProbeTimeout: time.Minute}, nil},
		{"negative failure threshold", Config{FailureThreshold: -1}, []string{"FailureThreshold"}},
		{"negative timeout", Config{Timeout: -time.Second}, []string{"Timeout"}},
		{"negative success threshold", Config{SuccessThreshold: -2}, []string{"SuccessThreshold"}},
		{"negative probes", Config{MaxHalfOpenProbes: -3}, []string{"MaxHalfOpenProbes"}},
		{"negative probe timeout", Config{ProbeTimeout: -1}, []string{"ProbeTimeout"}},
		{"unknown window type", Config{WindowType: 7}, []string{"WindowType"}},
		{"window too large", Config{WindowSize: MaxWindowSize + 1}, []string{"WindowSize"}},
		{"negative window", Config{WindowSize: -1}, []string{"WindowSize"}},
		{"too many buckets", Config{WindowBuckets: MaxWindowBuckets + 1}, []string{"WindowBuckets"}},
		{"negative period", Config{WindowPeriod: -1}, []string{"WindowPeriod"}},
		{"period shorter than buckets", Config{WindowPeriod: 5, WindowBuckets: 10}, []string{"WindowPeriod"}},
		{"rate above 100", Config{FailureRateThreshold: 101}, []string{"FailureRateThreshold"}},
		{"negative rate", Config{FailureRateThreshold: -0.5}, []string{"FailureRateThreshold"}},
		{"NaN rate", Config{SlowCallRateThreshold: math.NaN(), SlowCallDuration: 1}, []string{"SlowCallRateThreshold"}},
		{"negative minimum calls", Config{MinimumCalls: -1}, []string{"MinimumCalls"}},
		{"minimum above count window", Config{WindowSize: 5, MinimumCalls: 6}, []string{"MinimumCalls"}},
		{"minimum above time window is fine", Config{WindowType: TimeWindow, WindowSize: 5, MinimumCalls: 6}, nil},
		{"negative slow duration", Config{SlowCallDuration: -1}, []string{"SlowCallDuration"}},
		{"slow rate without duration", Config{SlowCallRateThreshold: 50}, []string{"SlowCallDuration"}},
		{"several errors at once", Config{FailureThreshold: -1, Timeout: -1, ProbeTimeout: -1}, []string{"FailureThreshold", "Timeout", "ProbeTimeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			fes := resilience.FieldErrors(err)
			var got []string
			for _, fe := range fes {
				got = append(got, fe.Field)
				if fe.Reason == "" {
					t.Errorf("%s: no reason", fe.Field)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Validate reported fields %q (%v), want %q", got, err, tt.want)
			}
			if err != nil && len(errorsUnwrap(err)) != len(fes) {
				t.Fatalf("Validate = %v: not only FieldErrors", err)
			}
		})
	}
}

// The value of a FieldError is the field's value as set, typed.
func TestValidateValues(t *testing.T) {
	err := Config{Timeout: -time.Second, MinimumCalls: 6, WindowSize: 5}.Validate()
	fes := resilience.FieldErrors(err)
	if len(fes) != 2 || fes[0].Value != -time.Second || fes[1].Value != 6 {
		t.Fatalf("FieldErrors = %+v", fes)
	}
	if !strings.Contains(fes[1].Reason, "WindowSize (5)") {
		t.Errorf("reason %q does not name the limit", fes[1].Reason)
	}
}

func errorsUnwrap(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestDefaults(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		check func(s settings) bool
	}{
		{"zero config opens after 5, for 60s, closes after 2", Config{}, func(s settings) bool {
			return s.failureThreshold == 5 && s.timeout == 60*time.Second && s.successThreshold == 2 && s.maxProbes == 2 && !s.windowed && s.probeTimeout == 60*time.Second
		}},
		{"probe timeout is at least DefaultProbeTimeout", Config{Timeout: time.Second}, func(s settings) bool { return s.probeTimeout == DefaultProbeTimeout }},
		{"probe timeout follows a long Timeout", Config{Timeout: 5 * time.Minute}, func(s settings) bool { return s.probeTimeout == 5*time.Minute }},
		{"explicit probe timeout", Config{ProbeTimeout: time.Second}, func(s settings) bool { return s.probeTimeout == time.Second }},
		{"negative probe timeout gets the default", Config{ProbeTimeout: -1}, func(s settings) bool { return s.probeTimeout == DefaultTimeout }},
		{"probes default to the success threshold", Config{SuccessThreshold: 7}, func(s settings) bool { return s.maxProbes == 7 }},
		{"a rate threshold disables the consecutive default", Config{FailureRateThreshold: 50}, func(s settings) bool {
			return s.failureThreshold == 0 && s.windowed && s.windowSize == 100 && s.minCalls == 10
		}},
		{"explicit consecutive with a rate", Config{FailureThreshold: 3, FailureRateThreshold: 50}, func(s settings) bool { return s.failureThreshold == 3 }},
		{"minimum calls capped by a small count window", Config{FailureRateThreshold: 50, WindowSize: 4}, func(s settings) bool { return s.minCalls == 4 }},
		{"time window defaults", Config{FailureRateThreshold: 50, WindowType: TimeWindow}, func(s settings) bool {
			return s.buckets == 10 && s.bucketDur == 6*time.Second && s.minCalls == 10
		}},
		{"invalid values get defaults", Config{FailureThreshold: -1, Timeout: -1, SuccessThreshold: -1, WindowType: 9, WindowSize: -1, WindowPeriod: 3, MinimumCalls: 1000, FailureRateThreshold: 200}, func(s settings) bool {
			return s.failureThreshold == 5 && s.timeout == DefaultTimeout && s.successThreshold == 2 && s.windowType == CountWindow && s.windowSize == 100 && s.bucketDur == 6*time.Second && s.minCalls == 10 && s.failureRate == 0
		}},
		{"slow rate without duration is off", Config{SlowCallRateThreshold: 50}, func(s settings) bool { return s.slowRate == 0 && !s.windowed && s.failureThreshold == 5 }},
		{"nil classify is the default", Config{}, func(s settings) bool {
			return s.classify(nil) == Success && s.classify(errors.New("x")) == Failure
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s := tt.cfg.settings(); !tt.check(s) {
				t.Fatalf("settings %+v do not hold the documented defaults", s)
			}
		})
	}
}

func TestExponentialOpenDuration(t *testing.T) {
	tests := []struct {
		name          string
		initial, ceil time.Duration
		mult          float64
		opens         []int
		want          []time.Duration
	}{
		{"doubling capped", time.Second, 10 * time.Second, 2, []int{0, 1, 2, 3, 4, 5, 100}, []time.Duration{1e9, 1e9, 2e9, 4e9, 8e9, 10e9, 10e9}},
		{"multiplier below one is constant", time.Second, time.Minute, 0.5, []int{1, 5}, []time.Duration{1e9, 1e9}},
		{"NaN multiplier is constant", time.Second, time.Minute, math.NaN(), []int{1, 5}, []time.Duration{1e9, 1e9}},
		{"ceiling below initial", 5 * time.Second, time.Second, 2, []int{1, 3}, []time.Duration{5e9, 5e9}},
		{"zero initial is the default timeout", 0, 0, 2, []int{1, 2}, []time.Duration{DefaultTimeout, DefaultTimeout}},
		{"infinite multiplier jumps to the ceiling", time.Second, time.Hour, math.Inf(1), []int{1, 2}, []time.Duration{time.Second, time.Hour}},
		{"huge ceiling never overflows", time.Second, math.MaxInt64, 10, []int{30, 1 << 40}, []time.Duration{math.MaxInt64, math.MaxInt64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ExponentialOpenDuration(tt.initial, tt.ceil, tt.mult)
			for i, n := range tt.opens {
				if got := f(n); got != tt.want[i] {
					t.Errorf("f(%d) = %v, want %v", n, got, tt.want[i])
				}
			}
		})
	}
}
