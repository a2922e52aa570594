// Package breaker is a circuit breaker: it prevents repeated calls to a
// failing service, so that the service gets time to recover and callers fail
// fast instead of piling up.
//
// # States
//
//   - [Closed]: normal operation, calls flow through and their outcomes are
//     counted.
//   - [Open]: too many failures, calls fail fast with an error that matches
//     [resilience.ErrCircuitOpen] without running.
//   - [HalfOpen]: testing whether the service recovered: a limited number of
//     probe calls run; enough successes close the circuit, any failure opens
//     it again.
//
// # Configuration
//
// A breaker is configured with a [Config] whose zero fields take defaults:
//
//	b := breaker.New(breaker.Config{
//		FailureThreshold: 5,                // failures before opening
//		Timeout:          60 * time.Second, // wait before retry
//		SuccessThreshold: 2,                // successes to close
//	})
//
// Every field of [Config] has a documented default for its zero value, so
// breaker.New(breaker.Config{}) is a working breaker (it is, in fact, the
// configuration above). [New] never fails; [Config.Validate] reports the
// fields New would replace by their defaults.
//
// # Usage
//
//	switch b.State() {
//	case breaker.Closed:
//		fmt.Println("Normal operation")
//	case breaker.Open:
//		fmt.Println("Circuit is open!")
//	case breaker.HalfOpen:
//		fmt.Println("Testing recovery")
//	}
//
//	err := b.Execute(ctx, func(ctx context.Context) error {
//		return externalAPICall(ctx)
//	})
//	if errors.Is(err, resilience.ErrCircuitOpen) {
//		// Circuit is open, fail fast
//		return cachedData()
//	}
//
// Streams and interceptors that cannot wrap the call in a function use the
// two-step form: [Breaker.Allow] returns a small [Permit] value, and the
// caller reports the outcome with [Permit.Record] or [Permit.Done] once the
// call finished, or with [Permit.DoneAt] when it read the clock at the end
// of the call anyway: a breaker that times calls (slow calls, a time-based
// window) then uses that reading instead of taking its own.
//
// # Beyond consecutive failures
//
// Besides the consecutive-failure threshold, a breaker can watch a
// sliding window, count-based (the last N calls) or time-based (buckets over
// a period), and open when the failure rate or the slow-call rate in it
// reaches a threshold once a minimum number of calls was seen. The open
// duration can grow while probes keep failing ([ExponentialOpenDuration]).
// Half-open admits a bounded number of concurrent probes and rejects the
// rest instead of queueing them; a probe whose outcome is never recorded
// gives its slot back after [Config.ProbeTimeout]. A result that arrives
// after the breaker changed state, or after its probe slot was reclaimed,
// is discarded (generation counting). The breaker can be
// forced open (isolated), forced closed (disabled) and reset by hand.
//
// [Breaker.Trip] opens a breaker from outside, as its own threshold would,
// and [Breaker.Coordinate] attaches a [Coordinator] that hears every
// transition and decides when an open breaker may half-open. Package
// redisfleet uses both to share one breaker across the processes of a
// fleet, and [RegistryConfig.OnCreate] to join each breaker a registry
// creates.
//
// # Events and metrics
//
// Events are optional function fields of the Config, named On<Event>:
// [Config.OnStateChange], [Config.OnReject] and [Config.OnResult] report
// what happens; nil costs nothing, and they are never called while the
// breaker holds a lock. [Breaker.Metrics] returns a snapshot of counts and
// rates.
//
// # Many breakers
//
// A [Registry] keeps one breaker per name (a target, a service, a method),
// configured by a [RegistryConfig]. Its state is bounded: it holds at most
// RegistryConfig.MaxKeys breakers, evicts idle closed breakers to make
// room (never an open, half-open or forced one), and sends names that find
// no room to one shared overflow breaker, reporting both through
// RegistryConfig.OnEvict and RegistryConfig.OnOverflow.
//
// # Performance
//
// In the closed state, Allow and the outcome's record take no mutex and
// allocate nothing (but for the stripes of the counters, once in a
// breaker's life; see Memory): they work on atomics only. The mutex is
// taken on state transitions, for half-open probes, and by a time-based
// window once per bucket duration to roll a bucket over. Rejections
// allocate nothing either, with the same exception.
//
// With the default configuration (consecutive failures, no window, no
// slow-call threshold), a success writes one counter and nothing else:
// once calls on several cores meet, the cumulative counts of
// [Breaker.Metrics] are striped over cache lines by the calling goroutine,
// and the run of consecutive failures is written only when it is not
// already zero. Goroutines on distinct stripes then scale instead of
// passing one cache line between them; the stripe is picked by a hash, so
// goroutines may share one (two goroutines on four stripes do one time in
// four). A rate window is shared by every call on the breaker, so a
// configuration with one writes to shared memory on every call.
//
// # Memory
//
// A default breaker takes about 512 bytes of heap. It keeps its cumulative
// counts in one place until two calls update them at the same moment; it
// then spreads them over stripes of 128 bytes, allocated once: twice as many
// as GOMAXPROCS when the breaker was created, rounded up to a power of two,
// at least 2 and at most 8, that is 256 to 1024 bytes more (512 at
// GOMAXPROCS 2). A breaker whose calls never overlap, as most of many
// per-key breakers, never allocates them. A rate window adds 32 bytes per
// bucket (time-based) or 4 bytes per call of its size (count-based).
//
// The package knows nothing of gRPC: the interceptors package maps status
// codes to outcomes and turns the events into telemetry.
package breaker
