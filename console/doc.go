// Package console serves a live, read-only page of the state of the
// library's gRPC pipelines: every breaker (state, window failure and
// slow-call rates, time in state, transitions), retry (retries per second,
// budget left, pushback waits, fallbacks), bulkhead (in flight, limit,
// queued, shed per second, the adaptive limit), adaptive throttle
// (refusals and their probability) and rate limit (admitted and limited
// per second) of an [interceptors.Client], and the bulkhead partitions,
// quotas, deadline settings and chaos faults of a
// [server.Server], with sparklines of the last minutes, the latest events
// and the latest retried calls (linked to their traces when a trace URL is
// configured).
//
// A [Console] is an [net/http.Handler], like net/http/pprof or grpc-go's
// channelz: mount it on an admin port, on a pattern that ends with a slash,
// and register the pipelines with one call each:
//
//	c, err := console.New(console.Config{})
//	...
//	defer c.Close()
//	remove := c.AddClient("payments", client)
//	defer remove()
//	c.AddServer("api", srv)
//	mux.Handle("/resilience/", c)
//
// The page updates itself with server-sent events (…/events), and polls
// …/snapshot.json when they are not available; scripts read the same
// [Snapshot] from …/snapshot.json. Troubles come first: open breakers,
// then half-open ones, then shedding and limiting.
//
// # Safety
//
// The page is self-contained (its HTML, CSS and JavaScript are embedded;
// it loads nothing from elsewhere and works offline), answers GET and HEAD
// only, and sends a Content-Security-Policy that forbids inline script and
// every other origin. Every name it shows comes from the network or from
// configuration, so the page renders names as text only, never as HTML;
// names are cut to [MaxNameLen] bytes, a pipeline shows at most
// Config.MaxRows rows (saying how many more there were), and the event and
// retried-call lists are bounded. Caller keys of a server's partitions and
// quotas are shown as the server's Snapshot shows them: a short keyed hash
// unless the server was configured to show them (server.BulkheadConfig.ShowKeys
// and server.RateLimitConfig.ShowKeys).
//
// The console has no access control: serve it on a loopback or admin
// address, or behind the authentication of the mux it is mounted on. It
// answers only requests addressed (by their Host header) to an IP
// address, localhost or a name of Config.AllowedHosts, so that a web page
// cannot read a console on loopback through a name of its own that
// resolves there (DNS rebinding); other requests get 403 Forbidden.
//
// # Cost
//
// Registering a client subscribes an [interceptors.Observer] with two
// hooks, OnEvent and OnCallEnd; registering a server subscribes a
// [server.Observer] with OnEvent, which the server calls only for calls
// it acted on (shed, limited, rejected, a fault injected). What that
// costs a client's calls:
//
//   - A unary call builds its CallInfo for the observers and, at its end,
//     calls OnCallEnd, which returns after one comparison when the call
//     made one attempt: no allocation, and a fraction of a microsecond
//     (BenchmarkUnaryInterceptor compares the interceptor with an
//     in-memory invoker without and with a console).
//   - A stream is always wrapped by the pipeline while somebody observes
//     the client, to report its end: a stream whose policy would have
//     been handed back untouched (no retry, breaker, bulkhead or default
//     timeout) costs seven allocations (about 1 KB) and a few microseconds
//     more (BenchmarkStreamInterceptor).
//   - OnEvent runs only off the happy path (a retry, a rejection, a
//     transition, a cache eviction) and counts with atomic operations; a
//     retry or hedge of a call with a span also records the attempt
//     under a lock, for the list of retried calls.
//
// A goroutine reads every pipeline's snapshot once per Config.Interval.
// A breaker transition asks for an early sample, at most one per 250ms,
// which reads no snapshot: it applies the transitions heard to the latest
// sample, so that the page shows a transition within a fraction of a
// second. The JSON forms of a sample are encoded once, when first asked
// for, whoever asks. Memory is bounded by the Config (see [Config] for
// the worst case): rows, samples per row, events and retried calls are
// capped whatever the traffic.
package console
