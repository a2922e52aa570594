// Package throttle is client-side adaptive throttling, after "Handling
// Overload" in Google's Site Reliability Engineering book: a client that
// sees its backend refuse most of what it sends starts rejecting requests
// itself, before they are sent, so that an overloaded backend spends less
// of its capacity refusing work.
//
// # The rule
//
// Over a sliding window, a [Throttle] counts requests (every request the
// application attempted, those the throttle rejected included) and
// accepts (the requests the backend accepted), and rejects each new
// request with probability
//
//	max(0, (requests - K×accepts) / (requests + 1))
//
// While the backend accepts everything, the probability is zero. When it
// is overloaded and accepts at most C requests a second, the load that
// reaches it settles near K×C: enough to notice quickly when it recovers,
// little enough to leave it the capacity it has. When it refuses a fixed
// share of whatever it is sent, so that it accepts a share a below 1/K,
// the client drops more and more until only Config.PassInterval's
// requests and the odds' remainder get through, and lets traffic back in,
// growing by about K× per window, once they are accepted again.
//
// # Defaults, and why
//
// Three well-known implementations differ:
//
//   - go-zero's core/breaker googleBreaker: K 1.5 (recent versions slide
//     it towards 1.1 while buckets keep failing), a 10s window in 40
//     buckets, a protection of 5 requests subtracted from the requests,
//     and one request a second let through whatever the odds.
//   - aegis' circuitbreaker/sre: K = 1/0.6 (about 1.67), a 3s window in
//     10 buckets, at least 100 requests before any rejection.
//   - Kratos: K 2, at least 20 requests.
//
// This package takes K 2, the book's own recommendation: the throttle acts
// only when the backend refuses more than half of what it gets, which
// leaves the fast, local decisions about a backend that is plainly down to
// a circuit breaker (package breaker) and keeps the throttle from fighting
// a backend that fails a minority of requests for reasons of their own.
// Set a lower K (1.1 to 1.5) to protect a backend sooner.
//
// The window is 10s in 40 buckets of 250ms, as go-zero's: long enough that
// a rate of a few requests a second gives meaningful counts, short enough
// that the throttle forgets an overload within seconds of its end (aegis'
// 3s reacts faster but swings with every burst of failures at low rates;
// the book's two minutes suits its large fleets more than one client).
//
// At least 20 requests must be in the window (Kratos' figure) before the
// throttle rejects anything: aegis' 100 would leave a client sending less
// than 10 requests a second unprotected for ever, while go-zero's 5 lets a
// handful of failures at startup throttle a quiet client.
//
// One request a second passes whatever the odds, as in go-zero: with
// rejections counted as requests, a probability close to 1 would
// otherwise let almost nothing through, and the client would be slow to
// notice a recovery.
//
// # Usage
//
//	t := throttle.New(throttle.Config{})
//	err := t.Execute(ctx, func(ctx context.Context) error { return call(ctx) })
//	if errors.Is(err, resilience.ErrThrottled) {
//		// rejected locally: fail fast, serve cached data; the error is a
//		// *throttle.RejectedError holding the probability drawn against
//	}
//
// Interceptors and streams use the two-step form: [Throttle.Allow] returns
// a small [Permit], and the caller records the outcome with [Permit.Done]
// or [Permit.Record]. Outcomes are [Accepted], [Rejected] (the backend
// refused or failed) and [Ignored] (the request never reached the
// backend, or its caller gave up).
//
// A [Registry] keeps one throttle per name (a target, a service) with a
// bound on their number; see [RegistryConfig].
//
// # Performance
//
// Allow and the outcome's record take no lock and allocate nothing: each is
// a few atomic loads and at most one atomic add (two more for an outcome
// recorded after its bucket completed, which also counts in the cached
// sums of the window), whatever the number of buckets; Allow reads the
// clock once and the record none. The first call of each bucket duration
// replaces a bucket, and one call, elected among those that see the
// boundary, recomputes the cached sums of the window; a rejection
// allocates its *[RejectedError]. The random draw, made only while the
// probability is above zero, uses math/rand/v2's per-thread source.
//
// The package knows nothing of gRPC: package interceptors maps status
// codes to outcomes (ThrottlePolicy) and turns rejections into events and
// telemetry.
package throttle
