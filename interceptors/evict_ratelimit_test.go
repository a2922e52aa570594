package interceptors_test

import (
	"testing"
	"time"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
)

// TestRateLimitedKeysSurviveEviction checks that a method whose rate-limit
// state the full cache looked at, but kept, while it made room for another
// method still gets decisions: the cache of limiters evicts every state it
// finds idle, never one it then keeps, so a decision never meets a state
// marked evicted that is still in the cache (which would make it look the
// key up again forever).
func TestRateLimitedKeysSurviveEviction(t *testing.T) {
	c := newClient(t, interceptors.Config{
		MaxKeys: 2,
		Default: interceptors.Policy{RateLimit: &interceptors.RateLimitPolicy{Rate: 1e9, Burst: 1}},
	})
	ic := c.UnaryClientInterceptor()
	ctx := ctxTimeout(t, time.Minute)
	call := func(m string) error { return ic(ctx, m, nil, nil, nil, answerAtOnce) }
	// A and B fill the cache; A is used again, B is not; C makes room.
	for _, m := range []string{"/evict.Svc/A", "/evict.Svc/B", "/evict.Svc/A", "/evict.Svc/C"} {
		if err := call(m); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- call("/evict.Svc/A") }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("A after the eviction: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a call of A did not return within 20s: its rate limit spins on a state marked evicted")
	}
}
