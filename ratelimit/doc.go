// Package ratelimit limits the rate of calls: a [Limiter] grants Rate
// permits per second on average with bursts of up to Burst, and a [Keyed]
// keeps one such limiter per key (caller, method, tenant) with a cap on the
// number of keys.
//
//	l := ratelimit.New(ratelimit.Config{Rate: 100, Burst: 20})
//	if !l.Allow() {
//		return resilience.ErrRateLimited // shed the call
//	}
//
// # Which method
//
// [Limiter.Allow] decides at once and is what a server shedding load wants.
// [Limiter.Wait] waits for a permit, but only when the permit comes before
// the caller's deadline: otherwise it fails at once with a
// *[resilience.RateLimitedError] saying how long until the permit (it never
// sleeps to the deadline only to fail then); this is what a client pacing
// its own calls wants. [Limiter.Reserve] grants permits for later, for
// callers that schedule work themselves. AllowN and ReserveN take an
// explicit time, for tests and for callers that already read the clock.
//
// # Configuration
//
// [Config] and [KeyedConfig] are plain data with useful zero values: the
// zero Rate means no limit, so that a configuration that states no rate
// limits nothing, and the zero Burst means one second's worth of permits.
// [New] and [NewKeyed] never fail; Validate reports, as
// *[resilience.FieldError]s, the values they clamp.
//
// # Algorithm
//
// The limiters implement GCRA, the generic cell rate algorithm, which is a
// token bucket in one number: the theoretical arrival time (TAT) at which
// the limiter would be full again. A decision moves the TAT forward by one
// interval (1/Rate) per permit, from now if the TAT is in the past, and
// grants the permits if the new TAT is at most Burst intervals ahead of
// now. The TAT is one atomic word, in eighths of a nanosecond since the
// limiter was created; a decision is one compare-and-swap on it, takes no
// lock and allocates nothing. The arithmetic saturates: no rate, burst,
// number of permits or clock reading makes it overflow or panic.
//
// # Shared stores
//
// [Store] is the interface the gRPC interceptors consume: Take(ctx, key,
// n) returns a [Decision]. [Limiter] and [Keyed] implement it in process; a
// store shared by a fleet (GCRA in one Redis script per decision, or
// leases of batches of permits) implements it elsewhere.
//
// # Concurrency and events
//
// Every type is safe for concurrent use. The optional OnLimited,
// OnOverflow and OnEvict hooks run on the goroutine of the call that
// caused the event, while no lock is held. [Limiter.Metrics] and
// [Keyed.Metrics] return snapshots of the counters, kept in striped
// counters so that the decision path stays cheap under contention.
//
// The package knows nothing of gRPC; the interceptors build on it.
package ratelimit
