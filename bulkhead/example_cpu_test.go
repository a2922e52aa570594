package bulkhead_test

import (
	"context"
	"fmt"

	"github.com/engineeringlabs/grpc-resilience/bulkhead"
)

// A bulkhead on the process's CPU sampler, closed at the end of its life:
// the sampler's goroutine, started by the first call, stops when the last
// strategy that used it is closed.
func ExampleCPU_Close() {
	cpu := bulkhead.NewCPU(bulkhead.CPUConfig{})
	bh := bulkhead.NewFromConfig(bulkhead.Config{Limit: 100, Strategy: cpu})
	err := bh.Execute(context.Background(), func(ctx context.Context) error { return nil })
	fmt.Println(err, cpu.Config().Threshold)
	_ = cpu.Close()
	// Output:
	// <nil> 0.8
}

// The settings a Gradient strategy runs with, defaults filled in: its
// probes run at a fifth of the limit until 20 executions completed.
func ExampleGradient_Config() {
	c := bulkhead.NewGradient(bulkhead.GradientConfig{MaxLimit: 200}).Config()
	fmt.Println(c.MaxLimit, c.ProbeInterval, c.ProbeSamples)
	// Output:
	// 200 1m0s 20
}
