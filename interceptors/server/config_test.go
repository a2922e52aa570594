package server_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
)

// Every bad setting is refused with an error naming the field and value,
// by Validate and by the constructors.
func TestConfigValidate(t *testing.T) {
	keyFn := func(context.Context, string) string { return "" }
	adaptive := func() bulkhead.Strategy { return bulkhead.NewAIMD(bulkhead.AIMDConfig{}) }
	tests := []struct {
		name string
		cfg  server.Config
		want string // substrings of the error
	}{
		{"exempt not a method", server.Config{Exempt: []string{"Health"}}, `Config.Exempt[0]: "Health"`},
		{"exempt too many slashes", server.Config{Exempt: []string{"/a/b/c"}}, `Config.Exempt[0]: "/a/b/c"`},
		{"exempt no service", server.Config{Exempt: []string{"//m"}}, `Config.Exempt[0]`},
		{"min remaining", server.Config{Deadline: server.DeadlineConfig{MinRemaining: -time.Second}}, "DeadlineConfig.MinRemaining: -1s"},
		{"default deadline", server.Config{Deadline: server.DeadlineConfig{Default: -time.Second}}, "DeadlineConfig.Default: -1s"},
		{"limit", server.Config{Bulkhead: server.BulkheadConfig{Limit: -1}}, "BulkheadConfig.Limit: -1"},
		{"partition", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, PartitionBy: 9}}, "BulkheadConfig.PartitionBy: Partition(9)"},
		{"header missing", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, PartitionBy: server.PartitionByHeader}}, `BulkheadConfig.Header: ""`},
		{"header stray", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, Header: "x"}}, `BulkheadConfig.Header: "x"`},
		{"keyfunc missing", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, PartitionBy: server.PartitionByFunc}}, "BulkheadConfig.KeyFunc: nil"},
		{"keyfunc stray", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, KeyFunc: keyFn}}, "BulkheadConfig.KeyFunc"},
		{"max partitions", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, MaxPartitions: -2}}, "BulkheadConfig.MaxPartitions: -2"},
		{"queue", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, Queue: -1}}, "BulkheadConfig.Queue: -1"},
		{"max wait", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, Queue: 1, MaxWait: -time.Second}}, "BulkheadConfig.MaxWait: -1s"},
		{"max wait without queue", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, MaxWait: time.Second}}, "BulkheadConfig.MaxWait: 1s, needs Queue"},
		{"pushback", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, PushbackDelay: -time.Second}}, "BulkheadConfig.PushbackDelay: -1s"},
		{"pushback and none", server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, PushbackDelay: time.Second, NoPushback: true}}, "BulkheadConfig.PushbackDelay: 1s"},
		{"disabled with settings", server.Config{Bulkhead: server.BulkheadConfig{Adaptive: adaptive}}, "BulkheadConfig.Limit: 0"},
		{"error rate", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{All: server.Fault{ErrorRate: 1.5}}}}, "FaultConfig.All.ErrorRate: 1.5"},
		{"error rate NaN", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{All: server.Fault{ErrorRate: math.NaN()}}}}, "FaultConfig.All.ErrorRate: NaN"},
		{"tail rate", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{All: server.Fault{TailRate: -0.1}}}}, "FaultConfig.All.TailRate: -0.1"},
		{"abort rate", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{All: server.Fault{AbortRate: 2}}}}, "FaultConfig.All.AbortRate: 2"},
		{"code", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{All: server.Fault{Code: 17}}}}, "FaultConfig.All.Code: Code(17)"},
		{"fault pushback", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{All: server.Fault{Pushback: -1}}}}, "FaultConfig.All.Pushback: -1ns"},
		{"latency", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{All: server.Fault{Latency: -1}}}}, "FaultConfig.All.Latency: -1ns"},
		{"latency max", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{All: server.Fault{Latency: 2 * time.Second, LatencyMax: time.Second}}}}, "FaultConfig.All.LatencyMax: 1s"},
		{"tail latency", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{All: server.Fault{TailLatency: -1}}}}, "FaultConfig.All.TailLatency: -1ns"},
		{"tail without latency", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{All: server.Fault{TailRate: 0.1}}}}, "FaultConfig.All.TailLatency: 0"},
		{"abort after", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{All: server.Fault{AbortRate: 1, AbortAfter: -1}}}}, "FaultConfig.All.AbortAfter: -1"},
		{"abort after without rate", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{All: server.Fault{AbortAfter: 3}}}}, "FaultConfig.All.AbortAfter: 3"},
		{"method key", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{Methods: map[string]server.Fault{"Unary": {}}}}}, `FaultConfig.Methods["Unary"]`},
		{"method fault", server.Config{Chaos: server.ChaosConfig{Faults: server.FaultConfig{Methods: map[string]server.Fault{"/a.S/M": {ErrorRate: -1}}}}}, `FaultConfig.Methods["/a.S/M"].ErrorRate: -1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
			if _, err := server.New(tt.cfg); err == nil {
				t.Errorf("New accepted the config")
			}
		})
	}
}

func TestZeroConfigsAreValid(t *testing.T) {
	if err := (server.Config{}).Validate(); err != nil {
		t.Errorf("Config{}: %v", err)
	}
	good := server.Config{
		Exempt:   []string{"/a.S/", "/a.S/M"},
		Deadline: server.DeadlineConfig{MinRemaining: time.Millisecond, Default: time.Second},
		Bulkhead: server.BulkheadConfig{Limit: 3, PartitionBy: server.PartitionByHeader, Header: "x-caller", MaxPartitions: 9, Queue: 2, MaxWait: time.Second, PushbackDelay: time.Second},
		Chaos: server.ChaosConfig{Seed: 3, Faults: server.FaultConfig{
			All:     server.Fault{ErrorRate: 0.5, Code: codes.Internal, Latency: time.Millisecond, LatencyMax: 2 * time.Millisecond, TailRate: 0.01, TailLatency: time.Second},
			Methods: map[string]server.Fault{"/a.S/": {}, "/a.S/M": {AbortRate: 1, AbortAfter: 0}},
		}},
	}
	if err := good.Validate(); err != nil {
		t.Errorf("good config: %v", err)
	}
}

// The stand-alone constructors refuse bad exemptions, naming the option.
func TestWithExemptValidated(t *testing.T) {
	_, err := server.NewBulkhead(server.BulkheadConfig{Limit: 1}, server.WithExempt("/ok.S/", "bad"))
	if err == nil || !strings.Contains(err.Error(), `WithExempt[1]: "bad"`) {
		t.Errorf("NewBulkhead: %v, want an error naming WithExempt[1]", err)
	}
	if _, err := server.NewChaos(server.ChaosConfig{}, server.WithExempt("")); err == nil {
		t.Error("NewChaos accepted an empty exemption")
	}
	if _, err := server.NewDeadline(server.DeadlineConfig{}, server.WithExempt("x")); err == nil {
		t.Error("NewDeadline accepted a bad exemption")
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
}
