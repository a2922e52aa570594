package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/ratelimit"
)

func Example() {
	// 100 permits per second, at most 3 at once.
	l := ratelimit.New(ratelimit.Config{Rate: 100, Burst: 3})
	for i := range 5 {
		fmt.Println(i, l.Allow())
	}
	// Output:
	// 0 true
	// 1 true
	// 2 true
	// 3 false
	// 4 false
}

func ExampleLimiter_AllowN() {
	l := ratelimit.New(ratelimit.Config{Rate: 2, Burst: 4})
	t0 := time.Now()
	fmt.Println(l.AllowN(t0, 4))                           // the whole burst
	fmt.Println(l.AllowN(t0, 1))                           // nothing left
	fmt.Println(l.AllowN(t0.Add(500*time.Millisecond), 1)) // one more every 500ms
	// Output:
	// true
	// false
	// true
}

func ExampleLimiter_Wait() {
	l := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 1})
	l.Allow() // the next permit comes in a second

	// A caller with 100ms left fails at once instead of waiting for a
	// permit it could not use.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := l.Wait(ctx)
	var rl *resilience.RateLimitedError
	if errors.As(err, &rl) {
		fmt.Println(errors.Is(err, resilience.ErrRateLimited), rl.RetryAfter.Round(100*time.Millisecond))
	}
	// Output:
	// true 1s
}

func ExampleLimiter_ReserveN() {
	l := ratelimit.New(ratelimit.Config{Rate: 10, Burst: 1})
	t0 := time.Now()
	for range 3 {
		r := l.ReserveN(t0, 1)
		fmt.Println(r.OK(), r.Delay())
	}
	// Output:
	// true 0s
	// true 100ms
	// true 200ms
}

func ExampleKeyed() {
	k := ratelimit.NewKeyed(ratelimit.KeyedConfig{
		Rate:    1,
		Burst:   2,
		MaxKeys: 10000, // callers beyond this share one limiter
		OnOverflow: func(key string) {
			fmt.Println("overflow:", key)
		},
	})
	for _, caller := range []string{"alice", "alice", "alice", "bob"} {
		fmt.Println(caller, k.Allow(caller))
	}
	// Output:
	// alice true
	// alice true
	// alice false
	// bob true
}

func ExampleStore() {
	// The interceptors consume a Store; a local Keyed is one.
	var s ratelimit.Store = ratelimit.NewKeyed(ratelimit.KeyedConfig{Rate: 1, Burst: 1})
	ctx := context.Background()
	for range 2 {
		d, err := s.Take(ctx, "/pkg.Svc/Get", 1)
		if err != nil {
			fmt.Println("store failed:", err) // decide: admit or refuse
			continue
		}
		fmt.Println(d.Allowed, errors.Is(d.Err(), resilience.ErrRateLimited), d.RetryAfter.Round(100*time.Millisecond))
	}
	// Output:
	// true false 0s
	// false true 1s
}

func ExampleConfig_Validate() {
	err := ratelimit.Config{Rate: -1, Burst: -2}.Validate()
	for _, fe := range resilience.FieldErrors(err) {
		fmt.Println(fe.Field, fe.Value)
	}
	// Output:
	// Rate -1
	// Burst -2
}
