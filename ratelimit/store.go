package ratelimit

import (
	"context"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// Store decides rate-limit requests by key: the interface a limiter shared
// by many processes implements, so that callers (the gRPC interceptors)
// work the same with a local [Keyed], a single [Limiter], or a store such
// as Redis that enforces one limit for a whole fleet.
//
// Take decides at once, without waiting, whether the n permits of key are
// available, and takes them if so. The store's own clock decides: a shared
// store uses one clock for every process (Redis' TIME), which is why Take
// takes no time. The rate and burst are the store's configuration, not the
// caller's. A GCRA store needs one round trip per call (a script that
// reads, compares and writes the key's TAT); a client that leases batches
// calls Take with the batch size and hands the permits out locally, and is
// itself a Store.
//
// The error reports a store that could not decide (unreachable, timed
// out); a refusal is a Decision with Allowed false, not an error. Callers
// choose whether a failing store admits or refuses. Implementations must be
// safe for concurrent use.
type Store interface {
	Take(ctx context.Context, key string, n int) (Decision, error)
}

// Decision is the answer of [Store.Take]. It is plain data.
type Decision struct {
	// Allowed reports that the permits were granted and taken.
	Allowed bool
	// RetryAfter is, when Allowed is false, how long until the permits
	// would be granted; 0 when never (more permits than the burst) or
	// when the store cannot say.
	RetryAfter time.Duration
}

// Err returns nil when d is Allowed, and otherwise a
// *[resilience.RateLimitedError] carrying RetryAfter, which matches
// [resilience.ErrRateLimited].
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	return &resilience.RateLimitedError{RetryAfter: d.RetryAfter}
}

var (
	_ Store = (*Limiter)(nil)
	_ Store = (*Keyed)(nil)
)
