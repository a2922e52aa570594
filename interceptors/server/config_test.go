package server_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
)

// Every bad setting is refused, by Validate and by New, with a
// *resilience.FieldError whose Field is the setting's path from Config.
func TestConfigValidate(t *testing.T) {
	keyFn := func(context.Context, string) string { return "" }
	adaptive := func() bulkhead.Strategy { return bulkhead.NewAIMD(bulkhead.AIMDConfig{}) }
	rl := func(c server.RateLimitConfig) server.Config { return server.Config{RateLimit: c} }
	fault := func(f server.Fault) server.Config {
		return server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{All: f}}}
	}
	tests := []struct {
		name  string
		cfg   server.Config
		field string
		value any
	}{
		{"exempt too many slashes", server.Config{Exempt: []string{"/a.S/M", "/a/b/c"}}, "Exempt[1]", "/a/b/c"},
		{"exempt no service", server.Config{Exempt: []string{"//m"}}, "Exempt[0]", "//m"},
		{"exempt empty", server.Config{Exempt: []string{""}}, "Exempt[0]", ""},
		{"exempt service with a slash", server.Config{Exempt: []string{"a.S/M"}}, "Exempt[0]", "a.S/M"},
		{"min remaining", server.Config{Deadline: server.DeadlineConfig{MinRemaining: -time.Second}}, "Deadline.MinRemaining", -time.Second},
		{"default deadline", server.Config{Deadline: server.DeadlineConfig{Default: -time.Second}}, "Deadline.Default", -time.Second},
		{"limit", server.Config{Bulkhead: server.BulkheadConfig{Limit: -1}}, "Bulkhead.Limit", -1},
		{"partition", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, PartitionBy: 9}}, "Bulkhead.PartitionBy", server.Partition(9)},
		{"header missing", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, PartitionBy: server.PartitionByHeader}}, "Bulkhead.Header", ""},
		{"header stray", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, Header: "x"}}, "Bulkhead.Header", "x"},
		{"keyfunc missing", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, PartitionBy: server.PartitionByFunc}}, "Bulkhead.KeyFunc", nil},
		{"keyfunc stray", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, KeyFunc: keyFn}}, "Bulkhead.KeyFunc", "set"},
		{"max partitions", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, MaxPartitions: -2}}, "Bulkhead.MaxPartitions", -2},
		{"queue", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, Queue: -1}}, "Bulkhead.Queue", -1},
		{"max wait", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, Queue: 1, MaxWait: -time.Second}}, "Bulkhead.MaxWait", -time.Second},
		{"max wait without queue", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, MaxWait: time.Second}}, "Bulkhead.MaxWait", time.Second},
		{"pushback", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, PushbackDelay: -time.Second}}, "Bulkhead.PushbackDelay", -time.Second},
		{"pushback and none", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, PushbackDelay: time.Second, NoPushback: true}}, "Bulkhead.PushbackDelay", time.Second},
		{"disabled with settings", server.Config{Bulkhead: server.BulkheadConfig{Adaptive: adaptive}}, "Bulkhead.Adaptive", "set"},
		{"disabled with a queue", server.Config{Bulkhead: server.BulkheadConfig{Queue: 2}}, "Bulkhead.Queue", 2},
		{"disabled showing keys", server.Config{Bulkhead: server.BulkheadConfig{ShowKeys: true}}, "Bulkhead.ShowKeys", true},
		{"rate limit disabled showing keys", rl(server.RateLimitConfig{ShowKeys: true}), "RateLimit.ShowKeys", true},
		{"short hash key", server.Config{KeyHashKey: []byte("0123456789")}, "KeyHashKey", "10 bytes"},
		{"error rate", fault(server.Fault{ErrorRate: 1.5}), "Chaos.Faults.All.ErrorRate", 1.5},
		{"tail rate", fault(server.Fault{TailRate: -0.1}), "Chaos.Faults.All.TailRate", -0.1},
		{"abort rate", fault(server.Fault{AbortRate: 2}), "Chaos.Faults.All.AbortRate", 2.0},
		{"code", fault(server.Fault{Code: 17}), "Chaos.Faults.All.Code", codes.Code(17)},
		{"fault pushback", fault(server.Fault{Pushback: -1}), "Chaos.Faults.All.Pushback", time.Duration(-1)},
		{"latency", fault(server.Fault{Latency: -1}), "Chaos.Faults.All.Latency", time.Duration(-1)},
		{"latency max", fault(server.Fault{Latency: 2 * time.Second, LatencyMax: time.Second}), "Chaos.Faults.All.LatencyMax", time.Second},
		{"tail latency", fault(server.Fault{TailLatency: -1}), "Chaos.Faults.All.TailLatency", time.Duration(-1)},
		{"tail without latency", fault(server.Fault{TailRate: 0.1}), "Chaos.Faults.All.TailLatency", time.Duration(0)},
		{"abort after", fault(server.Fault{AbortRate: 1, AbortAfter: -1}), "Chaos.Faults.All.AbortAfter", -1},
		{"abort after without rate", fault(server.Fault{AbortAfter: 3}), "Chaos.Faults.All.AbortAfter", 3},
		{"method key", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{Methods: map[string]server.Fault{"/Unary": {}}}}}, "Chaos.Faults.Methods[/Unary]", "/Unary"},
		{"method fault", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{Methods: map[string]server.Fault{"/a.S/M": {ErrorRate: -1}}}}}, "Chaos.Faults.Methods[/a.S/M].ErrorRate", -1.0},
		{"rate negative", rl(server.RateLimitConfig{Rate: -1}), "RateLimit.Rate", -1.0},
		{"rate infinite", rl(server.RateLimitConfig{Rate: math.Inf(1)}), "RateLimit.Rate", math.Inf(1)},
		{"rate too high", rl(server.RateLimitConfig{Rate: 2e9}), "RateLimit.Rate", 2e9},
		{"rate burst", rl(server.RateLimitConfig{Rate: 1, Burst: -1}), "RateLimit.Burst", -1},
		{"rate burst without rate", rl(server.RateLimitConfig{Burst: 2, Methods: map[string]server.RateQuota{"a.S": {Rate: 1}}}), "RateLimit.Burst", 2},
		{"rate partition", rl(server.RateLimitConfig{Rate: 1, PartitionBy: 9}), "RateLimit.PartitionBy", server.Partition(9)},
		{"rate header missing", rl(server.RateLimitConfig{Rate: 1, PartitionBy: server.PartitionByHeader}), "RateLimit.Header", ""},
		{"rate header stray", rl(server.RateLimitConfig{Rate: 1, PartitionBy: server.PartitionByPeer, Header: "x"}), "RateLimit.Header", "x"},
		{"rate keyfunc missing", rl(server.RateLimitConfig{Rate: 1, PartitionBy: server.PartitionByFunc}), "RateLimit.KeyFunc", nil},
		{"rate keyfunc stray", rl(server.RateLimitConfig{Rate: 1, KeyFunc: keyFn}), "RateLimit.KeyFunc", "set"},
		{"rate max partitions", rl(server.RateLimitConfig{Rate: 1, MaxPartitions: -1}), "RateLimit.MaxPartitions", -1},
		{"rate method key", rl(server.RateLimitConfig{Methods: map[string]server.RateQuota{"/a.S/M/x": {Rate: 1}}}), "RateLimit.Methods[/a.S/M/x]", "/a.S/M/x"},
		{"rate method quota", rl(server.RateLimitConfig{Methods: map[string]server.RateQuota{"/a.S/M": {Rate: math.Inf(-1)}}}), "RateLimit.Methods[/a.S/M].Rate", math.Inf(-1)},
		{"rate method burst without rate", rl(server.RateLimitConfig{Rate: 1, Methods: map[string]server.RateQuota{"/a.S/M": {Burst: 1}}}), "RateLimit.Methods[/a.S/M].Burst", 1},
		{"rate service named twice", rl(server.RateLimitConfig{Methods: map[string]server.RateQuota{"/a.S/": {Rate: 1}, "a.S": {}}}), "RateLimit.Methods[a.S]", "a.S"},
		{"rate disabled with a partition", rl(server.RateLimitConfig{PartitionBy: server.PartitionByMethod}), "RateLimit.PartitionBy", server.PartitionByMethod},
		{"rate disabled with a cap", rl(server.RateLimitConfig{MaxPartitions: 3}), "RateLimit.MaxPartitions", 3},
		{"rate disabled without pushback", rl(server.RateLimitConfig{NoPushback: true}), "RateLimit.NoPushback", true},
		{"bulkhead peer with header", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, PartitionBy: server.PartitionByPeer, Header: "x"}}, "Bulkhead.Header", "x"},
		{"service named twice", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{Methods: map[string]server.Fault{"/a.S/": {}, "a.S": {}}}}}, "Chaos.Faults.Methods[a.S]", "a.S"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			fes := resilience.FieldErrors(err)
			if len(fes) != 1 || fes[0].Field != tt.field || fes[0].Value != tt.value {
				t.Fatalf("Validate() = %v, want one FieldError for %s with value %v", err, tt.field, tt.value)
			}
			if fes[0].Reason == "" {
				t.Errorf("FieldError %v gives no reason", fes[0])
			}
			if _, err := server.New(tt.cfg); !errors.As(err, new(*resilience.FieldError)) {
				t.Errorf("New: %v, want the FieldError", err)
			}
		})
	}
	// NaN is not equal to itself: checked apart.
	fes := resilience.FieldErrors(fault(server.Fault{ErrorRate: math.NaN()}).Validate())
	if len(fes) != 1 || fes[0].Field != "Chaos.Faults.All.ErrorRate" {
		t.Errorf("ErrorRate NaN: %v, want a FieldError for Chaos.Faults.All.ErrorRate", fes)
	}
	fes = resilience.FieldErrors(rl(server.RateLimitConfig{Rate: math.NaN()}).Validate())
	if len(fes) != 1 || fes[0].Field != "RateLimit.Rate" {
		t.Errorf("Rate NaN: %v, want a FieldError for RateLimit.Rate", fes)
	}
}

// Validate reports every problem of a config at once, in every part, not
// only the first.
func TestConfigValidateReportsEveryProblem(t *testing.T) {
	cfg := server.Config{
		Exempt:   []string{"/ok.S/M", "", "ok.S", "/a/b/c"},
		Deadline: server.DeadlineConfig{MinRemaining: -1, Default: -1},
		Bulkhead: server.BulkheadConfig{Limit: -1, Queue: -1, PushbackDelay: -1},
		RateLimit: server.RateLimitConfig{Rate: -1, Burst: -1, PartitionBy: server.PartitionByHeader,
			Methods: map[string]server.RateQuota{"bad": {Rate: 1}, "x/y": {Burst: -2}}},
		Chaos: server.ChaosConfig{Faults: server.FaultConfig{
			All: server.Fault{ErrorRate: 2, Code: 99},
			Methods: map[string]server.Fault{
				"/b.S/M": {ErrorRate: -1},
				"/a.S/M": {AbortAfter: -1, Latency: -1},
			},
		}},
	}
	var got []string
	for _, fe := range resilience.FieldErrors(cfg.Validate()) {
		got = append(got, fe.Field)
	}
	want := []string{
		"Exempt[1]", "Exempt[3]",
		"Deadline.MinRemaining", "Deadline.Default",
		"RateLimit.Rate", "RateLimit.Burst", "RateLimit.Header", "RateLimit.Methods[x/y]", "RateLimit.Methods[x/y].Burst",
		"Bulkhead.Limit", "Bulkhead.Queue", "Bulkhead.PushbackDelay",
		"Chaos.Faults.All.ErrorRate", "Chaos.Faults.All.Code",
		"Chaos.Faults.Methods[/a.S/M].Latency", "Chaos.Faults.Methods[/a.S/M].AbortAfter",
		"Chaos.Faults.Methods[/b.S/M].ErrorRate",
	}
	if !slices.Equal(got, want) {
		t.Errorf("fields = %q,\nwant %q", got, want)
	}
	// Chaos.Set reports the problems of a FaultConfig relative to it.
	s, err := server.New(server.Config{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Chaos().Set(server.FaultConfig{All: server.Fault{TailRate: 3}, Methods: map[string]server.Fault{"x/y": {}}})
	got = got[:0]
	for _, fe := range resilience.FieldErrors(err) {
		got = append(got, fe.Field)
	}
	if want := []string{"All.TailRate", "All.TailLatency", "Methods[x/y]"}; !slices.Equal(got, want) {
		t.Errorf("Set: fields = %q, want %q", got, want)
	}
}

func TestZeroConfigsAreValid(t *testing.T) {
	if err := (server.Config{}).Validate(); err != nil {
		t.Errorf("Config{}: %v", err)
	}
	good := server.Config{
		Exempt:   []string{"/a.S/", "/a.S/M", "b.S", "Health"},
		Deadline: server.DeadlineConfig{MinRemaining: time.Millisecond, Default: time.Second},
		Bulkhead: server.BulkheadConfig{Limit: 3, PartitionBy: server.PartitionByHeader, Header: "x-caller", MaxPartitions: 9, Queue: 2, MaxWait: time.Second, PushbackDelay: time.Second},
		RateLimit: server.RateLimitConfig{Rate: 0.5, Burst: 3, PartitionBy: server.PartitionByHeader, Header: "X-Api-Key", MaxPartitions: 10, NoPushback: true,
			Methods: map[string]server.RateQuota{"/a.S/M": {Rate: 1e9}, "a.S": {}, "/b.S/": {Rate: 2, Burst: 1}}},
		Chaos: server.ChaosConfig{Seed: 3, Faults: server.FaultConfig{
			All:     server.Fault{ErrorRate: 0.5, Code: codes.Internal, Latency: time.Millisecond, LatencyMax: 2 * time.Millisecond, TailRate: 0.01, TailLatency: time.Second},
			Methods: map[string]server.Fault{"/a.S/": {}, "/a.S/M": {AbortRate: 1, AbortAfter: 0}, "b.S": {ErrorRate: 1}},
		}},
	}
	if err := good.Validate(); err != nil {
		t.Errorf("good config: %v", err)
	}
}

func TestNames(t *testing.T) {
	if got := server.EventShed.String(); got != "shed" {
		t.Errorf("EventShed = %q", got)
	}
	if got := server.EventFaultAbort.String(); got != "fault_abort" {
		t.Errorf("EventFaultAbort = %q", got)
	}
	if got := server.EventKind(99).String(); got != "EventKind(99)" {
		t.Errorf("EventKind(99) = %q", got)
	}
	if got := server.PartitionByHeader.String(); got != "header" {
		t.Errorf("PartitionByHeader = %q", got)
	}
	if got := server.PartitionByPeer.String(); got != "peer" {
		t.Errorf("PartitionByPeer = %q", got)
	}
	if got := server.EventRateLimited.String(); got != "rate_limited" {
		t.Errorf("EventRateLimited = %q", got)
	}
	if got := server.EventRateLimitOverflow.String(); got != "rate_limit_overflow" {
		t.Errorf("EventRateLimitOverflow = %q", got)
	}
}
