package redisfleet_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/redis/rueidis"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/ratelimit"
	"github.com/engineeringlabs/grpc-resilience/redisfleet"
)

// Every process of a fleet decides the "search" quota, 300 calls per
// second per caller with bursts of 30, through the same Redis: the fleet
// admits 300 per second per caller in all.
func ExampleLimiter_Quota() {
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	fleet, err := redisfleet.NewLimiter(redisfleet.LimiterConfig{
		Client:      client,
		LeaseWindow: 50 * time.Millisecond, // busy callers take batches of permits
		OnFallback: func(ev redisfleet.FallbackEvent) {
			log.Printf("Redis unavailable (%v): each process grants 1/%d of each quota", ev.Reason, ev.Processes)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer fleet.Close()

	search := fleet.Quota("search", 300, 30)
	d, _ := search.Take(context.Background(), "caller-42", 1)
	if !d.Allowed {
		log.Printf("rate limited: retry in %v", d.RetryAfter)
	}
}

// A gRPC server decides its quotas across the fleet by giving the rate
// limit a Store per quota.
func ExampleLimiter_server() {
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	fleet, err := redisfleet.NewLimiter(redisfleet.LimiterConfig{Client: client})
	if err != nil {
		log.Fatal(err)
	}
	defer fleet.Close()

	rl := server.RateLimitConfig{
		Rate:  300,
		Burst: 30,
		Store: func(quota string, q server.RateQuota) ratelimit.Store {
			return fleet.Quota(quota, q.Rate, q.Burst)
		},
	}
	_ = server.Config{RateLimit: rl}
}

// Validate reports every field it cannot take.
func ExampleLimiterConfig_Validate() {
	err := redisfleet.LimiterConfig{Timeout: -time.Millisecond, MaxLease: -1}.Validate()
	var fe *resilience.FieldError
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		if errors.As(e, &fe) {
			fmt.Printf("%s: %s\n", fe.Field, fe.Reason)
		}
	}
	// Output:
	// Client: required
	// Timeout: negative
	// MaxLease: negative
}
