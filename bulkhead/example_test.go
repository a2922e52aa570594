package bulkhead_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/bulkhead"
)

func Example() {
	bh := bulkhead.New(10) // at most 10 at once
	ctx := context.Background()

	err := bh.Execute(ctx, func(ctx context.Context) error {
		fmt.Println("working")
		return nil
	})
	fmt.Println("error:", err)

	// Fill every slot: the next call is rejected at once.
	for range 10 {
		p, _ := bh.TryAcquire()
		defer p.Release()
	}
	err = bh.Execute(ctx, func(ctx context.Context) error { return nil })
	if errors.Is(err, resilience.ErrBulkheadFull) {
		fmt.Println("shed:", err)
	}
	// Output:
	// working
	// error: <nil>
	// shed: resilience: bulkhead full
}

func ExampleBulkhead_Acquire() {
	bh := bulkhead.New(2)
	p, err := bh.Acquire(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Release() // p.Release is the release function; releasing twice is harmless

	fmt.Printf("%+v\n", bh.Metrics())
	// Output:
	// {Limit:2 InFlight:1 Waiting:0 Admitted:1 Rejected:0 Canceled:0}
}

func ExampleBulkhead_TryAcquire() {
	bh := bulkhead.New(1)
	first, ok := bh.TryAcquire()
	fmt.Println("first:", ok)
	_, ok = bh.TryAcquire()
	fmt.Println("second:", ok)
	first.Release()
	_, ok = bh.TryAcquire()
	fmt.Println("after release:", ok)
	// Output:
	// first: true
	// second: false
	// after release: true
}

// A queue lets callers wait for a slot instead of being rejected at once;
// OnReject hears of every rejection.
func ExampleNewFromConfig() {
	bh := bulkhead.NewFromConfig(bulkhead.Config{
		Limit:   1,
		Queue:   8,                     // up to 8 callers may wait, first come first served
		MaxWait: 10 * time.Millisecond, // for at most 10ms each
		OnReject: func(r bulkhead.Rejection) {
			fmt.Printf("rejected: %v after %v\n", r.Reason, r.Waited)
		},
	})
	p, _ := bh.TryAcquire()
	defer p.Release()

	_, err := bh.Acquire(context.Background()) // waits 10ms for the held slot
	fmt.Println(err)
	// Output:
	// rejected: max_wait after 10ms
	// resilience: bulkhead full
}

// With a Strategy the limit adapts to what the executions experience;
// OnLimitChange hears of every change.
func ExampleConfig_adaptive() {
	bh := bulkhead.NewFromConfig(bulkhead.Config{
		Limit:    20,
		Strategy: bulkhead.NewAIMD(bulkhead.AIMDConfig{MinLimit: 5, MaxLimit: 100}),
		OnLimitChange: func(oldLimit, newLimit int) {
			fmt.Printf("limit %d -> %d\n", oldLimit, newLimit)
		},
	})
	p, _ := bh.TryAcquire()
	p.ReleaseWith(bulkhead.OutcomeDropped) // the service shed the call: back off
	p.ReleaseWith(bulkhead.OutcomeDropped) // a second release does nothing

	err := bh.Execute(context.Background(), func(ctx context.Context) error {
		return context.DeadlineExceeded // a timeout is a drop too
	})
	fmt.Println(err)
	// Output:
	// limit 20 -> 18
	// limit 18 -> 16
	// context deadline exceeded
}

func ExampleNewGradient() {
	g := bulkhead.NewGradient(bulkhead.GradientConfig{
		MinLimit: 10,
		MaxLimit: 500,
		Window:   500 * time.Millisecond,
	})
	bh := bulkhead.NewFromConfig(bulkhead.Config{Limit: 50, Strategy: g})
	fmt.Println(bh.Metrics().Limit)
	// Output:
	// 50
}

// Validate reports every value NewFromConfig would have to clamp, each as a
// *resilience.FieldError.
func ExampleConfig_Validate() {
	err := bulkhead.Config{Limit: -1, Queue: -2}.Validate()
	for _, fe := range resilience.FieldErrors(err) {
		fmt.Println(fe.Field, fe.Value)
	}
	// Output:
	// Limit -1
	// Queue -2
}

func ExampleAIMDConfig_Validate() {
	err := bulkhead.AIMDConfig{BackoffRatio: 1.5}.Validate()
	fmt.Println(err)
	// Output:
	// BackoffRatio: 1.5: must be in (0, 1)
}

// A server bulkhead that admits up to 200 calls at once while the CPU has
// headroom and, once the CPUs the process may use are more than 80% busy,
// only as many as the server has shown it completes without queueing.
func ExampleNewCPU() {
	bh := bulkhead.NewFromConfig(bulkhead.Config{
		Limit:    200,
		Strategy: bulkhead.NewCPU(bulkhead.CPUConfig{}),
	})
	fmt.Println(bh.Metrics().Limit)
	// Output:
	// 200
}

// Usage replaces the process's CPU sampler with another signal, here a
// load figure in per mille that something else keeps up to date.
func ExampleCPUConfig_usage() {
	var perMille atomic.Int64
	perMille.Store(350)
	cpu := bulkhead.NewCPU(bulkhead.CPUConfig{
		Threshold: 0.9,
		CoolOff:   2 * time.Second,
		Usage: func() (float64, bool) {
			return float64(perMille.Load()) / 1000, true
		},
	})
	bh := bulkhead.NewFromConfig(bulkhead.Config{Limit: 100, Strategy: cpu})
	err := bh.Execute(context.Background(), func(ctx context.Context) error { return nil })
	fmt.Println(err, bh.Metrics().Limit) // 35% busy: no CPU limit
	// Output:
	// <nil> 100
}

func ExampleCPUConfig_Validate() {
	err := bulkhead.CPUConfig{Threshold: 80, CoolOff: -time.Second}.Validate()
	for _, fe := range resilience.FieldErrors(err) {
		fmt.Println(fe)
	}
	// Output:
	// Threshold: 80: must be in (0, 1)
	// CoolOff: -1s: must be at least 0
}

// Probes keep the Gradient strategy's reference latency fresh under long
// overload; a service whose executions hold their slot for a long time
// (streams) may probe less often, or not at all.
func ExampleGradientConfig_probes() {
	g := bulkhead.NewGradient(bulkhead.GradientConfig{
		ProbeInterval: 5 * time.Minute,
		ProbeLimit:    5,
		ProbeSamples:  20,
	})
	bh := bulkhead.NewFromConfig(bulkhead.Config{Limit: 50, Strategy: g})
	fmt.Println(bh.Metrics().Limit)
	// Output:
	// 50
}
