package redisfleet_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/redis/rueidis"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/redisfleet"
)

// Every process of a fleet joins its breaker for the payments service to
// the fleet under the same name: when one process's breaker opens, every
// process's does, and when the open time is over, one process probes for
// all of them.
func ExampleBreakers() {
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	fleet, err := redisfleet.NewBreakers(redisfleet.BreakersConfig{
		Client:               client,
		FailureRateThreshold: 50,  // the fleet opens at 50% failures...
		MinimumCalls:         100, // ...over at least 100 calls in its window
		OnFallback: func(ev redisfleet.FallbackEvent) {
			log.Printf("breakers run on their own: %v", ev.Reason)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer fleet.Close()

	b := breaker.New(breaker.Config{FailureThreshold: 5, Timeout: 30 * time.Second})
	leave, err := fleet.Join("payments", b)
	if err != nil {
		log.Fatal(err)
	}
	defer leave()

	err = b.Execute(context.Background(), func(ctx context.Context) error {
		return nil // call the payments service
	})
	if errors.Is(err, resilience.ErrCircuitOpen) {
		log.Print("payments is failing across the fleet: serve the fallback")
	}
}

// Validate reports every field it cannot take.
func ExampleBreakersConfig_Validate() {
	err := redisfleet.BreakersConfig{FailureRateThreshold: 150, Window: -time.Second}.Validate()
	var fe *resilience.FieldError
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		if errors.As(e, &fe) {
			fmt.Printf("%s: %s\n", fe.Field, fe.Reason)
		}
	}
	// Output:
	// Client: required
	// Window: must be between 0 and 1h0m0s
	// FailureRateThreshold: must be a percentage between 0 and 100
}
