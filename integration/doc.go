// Package integration holds end-to-end tests over real loopback TCP: whole
// servers and clients with the resilience interceptors, driven by real load
// generators (ghz) where the behaviour under load is the point, and the
// reliability suite that RELIABILITY.md (at the repository root) describes:
//
//   - chaos scenarios (chaos_test.go): the server stopped and restarted
//     mid-call and mid-stream, an in-process TCP proxy (proxy_test.go) that
//     refuses, resets, stalls and slows connections from a seeded source,
//     handlers that hang for an hour, random mixes of every status code from
//     the test service and the server's chaos interceptor, and a total
//     outage against retry budgets;
//   - a soak (soak_test.go): 64 callers while the fault rate ramps up and
//     down, 6s by default and a minute with `make soak`
//     (-soak.duration=60s), checking that the live heap does not grow;
//   - hostile input (hostile_test.go): malformed and huge pushback and
//     RetryInfo through the real pipeline, out-of-range values, 100,000
//     caller keys against a partitioned server bulkhead, oversized and
//     malformed configuration files, and cancellation at every point of a
//     call.
//
// Every scenario checks the same invariants (harness_test.go): no call
// returns later than its deadline plus a scheduling slack, no stream
// message reaches the application twice or out of order, codes that are
// never retried get no further attempt, the server's handlers never exceed
// its bulkhead, retries stay within their budget, and no goroutine
// outlives the test. Each logs a summary line starting with "reliability"
// (go test -v) with its figures.
//
// It has no API; everything is in its tests, which skip themselves under
// -short.
package integration
