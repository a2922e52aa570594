// Command scenarios runs the loopback gRPC scenarios of grpc-resilience's
// benchmarks, ours and the peers' one after the other in one process against
// real gRPC servers on 127.0.0.1, and prints each result as a line in the Go
// benchmark format (custom units), so that `make bench` can append them to
// the micro-benchmarks' output and turn everything into BENCHMARKS.md:
//
//   - overhead: serial calls through a bare client and through each
//     library's client interceptor, interleaved call by call; the median
//     latency of each and its overhead over the bare call in percent;
//   - amplification: attempts the server sees per logical call while it
//     answers UNAVAILABLE to everything, 32 concurrent callers;
//   - recovery: time from the end of an outage until 99% of calls succeed;
//   - hedging: p99 latency and extra load on a server with a heavy latency
//     tail, without hedging, with ours, with grpc-go's native hedging and
//     with failsafe-go's;
//   - overload: admitted p99 and goodput at 3x a server's capacity, with and
//     without the server bulkhead or adaptive limit.
//
// Every load loop is bounded in count and in time. Usage:
//
//	go run ./cmd/scenarios [-scale 1] [-count 1] [-only amplification,hedging]
//
// -scale multiplies every duration and count (0.1 for a smoke run); -count
// runs every scenario that many times, round after round, so that the
// report can take the median of each figure.
package main
