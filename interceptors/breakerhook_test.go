package interceptors_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
)

// joined records what Config.OnBreakerCreated heard; safe for concurrent
// use.
type joined struct {
	mu       sync.Mutex
	created  map[string]*breaker.Breaker
	released map[string]int
}

func newJoined() *joined {
	return &joined{created: map[string]*breaker.Breaker{}, released: map[string]int{}}
}

func (j *joined) hook(name string, b *breaker.Breaker) func() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.created[name] != nil {
		panic("breaker " + name + " created twice while held")
	}
	j.created[name] = b
	return func() {
		j.mu.Lock()
		defer j.mu.Unlock()
		j.released[name]++
		delete(j.created, name)
	}
}

// OnBreakerCreated hears of every breaker the client makes for a policy,
// under a name of the policy and the breaker's scope key, with the breaker
// that then guards the calls; the release runs once when the client drops
// the breaker from its bounded state, so that at most MaxKeys are held;
// the overflow breakers are not offered.
func TestOnBreakerCreated(t *testing.T) {
	ok := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("per method", func(t *testing.T) {
		j := newJoined()
		c, err := interceptors.NewClient(interceptors.Config{
			Default:          interceptors.Policy{Breaker: &interceptors.BreakerPolicy{}},
			Methods:          map[string]interceptors.Policy{"/pkg.Svc/Special": {Breaker: &interceptors.BreakerPolicy{}}},
			MaxKeys:          4,
			OnBreakerCreated: j.hook,
		})
		if err != nil {
			t.Fatal(err)
		}
		call := c.UnaryClientInterceptor()
		for _, m := range []string{"/pkg.Svc/A", "/pkg.Svc/Special", "/pkg.Svc/A"} {
			if err := call(ctx, m, nil, nil, nil, ok); err != nil {
				t.Fatal(err)
			}
		}
		j.mu.Lock()
		if len(j.created) != 2 || j.created["default /pkg.Svc/A"] != c.Breaker("", "/pkg.Svc/A") ||
			j.created["method:/pkg.Svc/Special /pkg.Svc/Special"] != c.Breaker("", "/pkg.Svc/Special") {
			t.Errorf("created %v, want the breakers of /pkg.Svc/A and /pkg.Svc/Special under their policies' names", j.created)
		}
		j.mu.Unlock()
		const n = 100
		for i := range n {
			if err := call(ctx, fmt.Sprintf("/pkg.Svc/M%d", i), nil, nil, nil, ok); err != nil {
				t.Fatal(err)
			}
		}
		j.mu.Lock()
		defer j.mu.Unlock()
		if len(j.created) > 4 {
			t.Errorf("%d breakers held after %d methods, want at most MaxKeys (4)", len(j.created), n+2)
		}
		total := 0
		for name, r := range j.released {
			if r != 1 {
				t.Errorf("%s released %d times, want once", name, r)
			}
			total += r
		}
		if total+len(j.created) != n+2 {
			t.Errorf("%d released and %d held, want every one of the %d breakers made in one or the other", total, len(j.created), n+2)
		}
	})

	t.Run("per service", func(t *testing.T) {
		j := newJoined()
		c, err := interceptors.NewClient(interceptors.Config{
			Default:          interceptors.Policy{Breaker: &interceptors.BreakerPolicy{Scope: interceptors.ScopeService}},
			MaxKeys:          2,
			OnBreakerCreated: j.hook,
		})
		if err != nil {
			t.Fatal(err)
		}
		call := c.UnaryClientInterceptor()
		for _, m := range []string{"/a.Svc/M", "/a.Svc/N", "/b.Svc/M"} {
			if err := call(ctx, m, nil, nil, nil, ok); err != nil {
				t.Fatal(err)
			}
		}
		j.mu.Lock()
		defer j.mu.Unlock()
		if len(j.created) != 2 || j.created["default /a.Svc"] != c.Breaker("", "/a.Svc/N") || j.created["default /b.Svc"] == nil {
			t.Errorf("created %v, want one breaker per service, named by the policy and the service", j.created)
		}
		for name := range j.created {
			if name == "(overflow)" || j.created[name] == nil {
				t.Errorf("offered %q", name)
			}
		}
	})
}
