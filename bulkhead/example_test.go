package bulkhead_test

import (
	"context"
	"errors"
	"fmt"
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
