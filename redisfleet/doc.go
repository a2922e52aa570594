// Package redisfleet shares resilience state across the processes of a
// fleet through Redis (or Valkey): rate-limit quotas that the whole fleet
// enforces together, and circuit-breaker state, so that N processes admit
// a quota once, not N times, and open their breakers together.
//
// The caller gives it a [rueidis.Client] it configured (address, TLS,
// authentication are the client's options) and a key prefix
// ([DefaultPrefix], "grpcres:", when empty) under which every key and
// channel lives, so that several applications can share one Redis. The
// package never closes the client. rueidis pipelines concurrent commands
// on one connection, which is what decisions from many goroutines need;
// docs/fleet.md has the measurements behind the choice.
//
// # Shared quotas
//
// A [Limiter] decides rate limits for the fleet. [Limiter.Quota] returns a
// [ratelimit.Store] for one quota (a rate and a burst per caller key),
// which is what interceptors/server's RateLimitConfig.Store takes:
//
//	client, _ := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"redis:6379"}})
//	fleet, _ := redisfleet.NewLimiter(redisfleet.LimiterConfig{Client: client})
//	defer fleet.Close()
//	q := fleet.Quota("search", 300, 30) // 300/s per caller, bursts of 30, across the fleet
//	d, _ := q.Take(ctx, callerKey, 1)
//
// Each decision is GCRA evaluated in Redis by one Lua script call
// (EVALSHA, and EVAL after a NOSCRIPT), which reads Redis' TIME so that
// every process shares one clock. The RetryAfter of a refusal is exact to
// the microsecond. A key's state is one string, the theoretical arrival
// time, which expires when it passes. Values under the package's keys that
// it cannot have written are treated as absent and counted
// ([ErrHostileValue]).
//
// # Leases
//
// A round trip per decision costs tens of microseconds. With
// [LimiterConfig.LeaseWindow] set, a process whose calls for a key come
// fast takes a batch of permits in one round trip (its recent rate's worth
// for the window, at most MaxLease and the burst) and grants them locally;
// when Redis refuses, the process refuses locally until the RetryAfter
// Redis gave. Permits unused within twice the window are dropped, so a
// lease never lets a process bank permits: the fleet admits at most the
// quota, and under-admits at most the permits of expired leases. With
// three processes sharing 300/s under skewed load (one process 80% of the
// calls), both modes admitted the quota within 1% over 10s in the
// package's multi-process test.
//
// # When Redis fails
//
// A decision never waits for Redis longer than [LimiterConfig.Timeout]
// (5ms by default) nor than three quarters of the time left before its
// context's deadline. A round trip fails when Redis does not answer in
// time or answers with an error reply (OOM, READONLY, LOADING, ...); a
// failed round trip is decided by the key's local share, charged with
// what Redis granted this process. Round trips run behind a
// [breaker.Breaker]: after three consecutive failed decisions, or two
// failed heartbeats, each process decides with its local share of every
// quota (the rate divided by the number of live processes, which announce
// themselves in Redis every HeartbeatInterval, or by
// [LimiterConfig.Processes]), reports it through OnFallback,
// [LimiterMetrics] and one log line, and tries Redis again every
// RetryInterval; when Redis answers, OnRecover and one log line report the
// return to the shared quotas. With the defaults, an outage is noticed
// within a second even when no call comes. A Quota's Take never returns an
// error: a fleet whose Redis is down still enforces its quotas,
// approximately.
//
// # Shared breaker state
//
// [Breakers] shares the state of circuit breakers across the processes of a
// fleet. Each process keeps its local [breaker.Breaker] (the closed path
// stays local: no network, no allocation per call) and joins it under a name
// every process uses for the same dependency:
//
//	fleet, err := redisfleet.NewBreakers(redisfleet.BreakersConfig{Client: client})
//	defer fleet.Close()
//	leave, err := fleet.Join("payments", b)
//
// A goroutine per process publishes each breaker's counts every
// SyncInterval and reads the fleet's totals over Window, in one round trip;
// the fleet opens when its failure (or slow-call) rate reaches the threshold.
// When any process's breaker opens, the fleet's state is written and
// announced on a channel; every process, hearing it, reads the state from
// Redis (a message is only a hint) and trips its breaker. When the open
// time is over, one process wins a probe lease and only its breaker
// half-opens; its probes close (or reopen) the breaker of every process.
// When Redis does not answer, or answers that it cannot serve, each
// breaker runs on its own until it does (OnFallback, OnRecover, one log
// line each). See docs/fleet-breaker.md.
//
// # Keys
//
// Under the prefix: rl:<len>:<quota>:<digest> for the quotas (the digest
// is a truncated SHA-256 of the caller key: no caller key is stored in
// Redis), procs for the live processes, br: for the breakers.
//
// Every type is safe for concurrent use. Hooks run on the goroutine that
// saw the event, never while the package holds a lock.
package redisfleet
