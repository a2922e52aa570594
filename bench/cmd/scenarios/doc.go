// Command scenarios runs the loopback gRPC scenarios of grpc-resilience's
// benchmarks, ours and the peers' one after the other in one process against
// real gRPC servers on 127.0.0.1, and prints each result as a line in the Go
// benchmark format (custom units), so that `make bench` can append them to
// the micro-benchmarks' output and turn everything into BENCHMARKS.md:
//
//   - overhead: serial calls through a bare client and through each
//     library's client interceptor, interleaved call by call; the median
//     latency of each and its overhead over the bare call in percent;
//   - callers: throughput, p99 and median latency of the bare client, our
//     full pipeline, go-grpc-middleware's retry and failsafe-go's retry and
//     breaker at 1, 8, 64 and 256 concurrent callers in a closed loop, the
//     clients taking turns in slices on one server;
//   - amplification: attempts the server sees per logical call while it
//     answers UNAVAILABLE to everything, 32 concurrent callers;
//   - recovery: time from the end of an outage until 99% of calls succeed;
//   - hedging: p99 latency and extra load on a server with a heavy latency
//     tail, without hedging, with ours, with grpc-go's native hedging and
//     with failsafe-go's;
//   - overload: admitted p99 and goodput at 3x a server's capacity, with and
//     without the server bulkhead or adaptive limit;
//   - cpu-shedding: goodput and admitted latency of a CPU-bound server in a
//     process of its own (one core; a cgroup with a quota of one CPU when the
//     run may create one) at 1x, 2x and 4x its capacity, unprotected, with
//     our bulkhead and its AIMD, Gradient and CPU strategies, and with
//     go-zero's adaptive shedder and aegis' BBR limiter. The server process
//     is this binary started again with GRPCRES_BENCH_CPUSERVER set; with
//     GRPCRES_BENCH_CPUSERVER_PROFILE=file, each server process writes its
//     CPU profile there;
//   - throttling: load that reaches a backend serving half of what its
//     callers offer, their success rate, and their recovery after an
//     outage, with our adaptive throttle and breaker, go-zero's and aegis'
//     SRE breakers and failsafe-go's adaptive throttler.
//
// Every load loop is bounded in count and in time. go-zero's logs, which
// go to stdout by default, are discarded. Usage:
//
//	go run ./cmd/scenarios [-scale 1] [-count 1] [-only amplification,hedging]
//
// -scale multiplies every duration and count (0.1 for a smoke run); -count
// runs every scenario that many times, round after round, so that the
// report can take the median of each figure.
package main
