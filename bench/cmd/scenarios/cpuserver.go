package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	aegisratelimit "github.com/go-kratos/aegis/ratelimit"
	"github.com/go-kratos/aegis/ratelimit/bbr"
	"github.com/zeromicro/go-zero/core/load"
	"github.com/zeromicro/go-zero/core/logx"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ourbulkhead "github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// The CPU-shedding scenario's server runs in a process of its own, this
// binary started again with these variables set, so that the load
// generator's CPU time is not the server's.
const (
	// envCPUServer names the protection the server process runs with.
	envCPUServer = "GRPCRES_BENCH_CPUSERVER"
	// envCPUServerJoin, when set, makes the process set itself up and
	// start again without it (see joinAndRestart): its value lists,
	// comma-separated, the cgroup.procs files the process writes its pid
	// to, possibly none.
	envCPUServerJoin = "GRPCRES_BENCH_CPUSERVER_JOIN"
	// envCPUServerCore is the CPU the process is pinned to, when set.
	envCPUServerCore = "GRPCRES_BENCH_CPUSERVER_CORE"
	// cpuServerNice is the server process's nice value, when it may set it.
	cpuServerNice = -10
	// envCPUServerProfile, when set, names a file to which each server
	// process writes a CPU profile of its whole life (the last server
	// process's remains).
	envCPUServerProfile = "GRPCRES_BENCH_CPUSERVER_PROFILE"
)

// cpuWork is the CPU time each call of the CPU-shedding scenario costs the
// server, done in cpuChunks chunks with a check of the call's context
// between them: the server stops working for a caller who gave up.
const (
	cpuWork   = 5 * time.Millisecond
	cpuChunks = 10
)

// cpuDeadline is each call's deadline in the CPU-shedding scenario: about
// 15 times the unloaded median (about 6ms on the machine of BENCHMARKS.md), the
// same 100ms as in the overload scenario.
const cpuDeadline = 100 * time.Millisecond

// cpuProtections are the server set-ups of the CPU-shedding scenario, in the
// order they run. The fixed bulkhead allows 2 calls at once (one running,
// one ready, on one core); AIMD and Gradient start at 4 and are configured
// as in the overload scenario; our CPU strategy and the peers' shedders take
// their defaults, and ours also runs with a MinLimit of 2 (one call
// running, one ready: the peers never shed below 2 in flight either).
var cpuProtections = []string{"none", "ours-bulkhead", "ours-adaptive-aimd", "ours-adaptive-gradient", "ours-cpu", "ours-cpu-min2", "go-zero-shedder", "aegis-bbr"}

// cpuProtection returns the server interceptors of the protection named.
func cpuProtection(name string) ([]grpc.UnaryServerInterceptor, error) {
	ours := func(cfg server.BulkheadConfig) ([]grpc.UnaryServerInterceptor, error) {
		s, err := server.New(server.Config{Bulkhead: cfg})
		if err != nil {
			return nil, err
		}
		return []grpc.UnaryServerInterceptor{s.UnaryServerInterceptor()}, nil
	}
	switch name {
	case "none":
		return nil, nil
	case "ours-bulkhead":
		return ours(server.BulkheadConfig{Limit: 2})
	case "ours-adaptive-aimd":
		return ours(server.BulkheadConfig{Limit: 4, Adaptive: func() ourbulkhead.Strategy {
			return ourbulkhead.NewAIMD(ourbulkhead.AIMDConfig{Timeout: cpuDeadline / 2})
		}})
	case "ours-adaptive-gradient":
		return ours(server.BulkheadConfig{Limit: 4, Adaptive: func() ourbulkhead.Strategy {
			return ourbulkhead.NewGradient(ourbulkhead.GradientConfig{Window: 100 * time.Millisecond})
		}})
	case "ours-cpu":
		return ours(server.BulkheadConfig{Limit: 1000, Adaptive: func() ourbulkhead.Strategy {
			return ourbulkhead.NewCPU(ourbulkhead.CPUConfig{})
		}})
	case "ours-cpu-min2":
		return ours(server.BulkheadConfig{Limit: 1000, Adaptive: func() ourbulkhead.Strategy {
			return ourbulkhead.NewCPU(ourbulkhead.CPUConfig{MinLimit: 2})
		}})
	case "go-zero-shedder":
		return []grpc.UnaryServerInterceptor{goZeroShedding(load.NewAdaptiveShedder())}, nil
	case "aegis-bbr":
		return []grpc.UnaryServerInterceptor{aegisLimit(bbr.NewLimiter())}, nil
	}
	return nil, fmt.Errorf("no CPU protection %q", name)
}

// goZeroShedding puts a go-zero shedder in front of the handler the way
// go-zero's zrpc server does (its serverinterceptors.UnarySheddingInterceptor,
// without the statistics logging): RESOURCE_EXHAUSTED when shed, the call
// counted as failed when its deadline passed and as passed otherwise.
func goZeroShedding(shedder load.Shedder) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		promise, err := shedder.Allow()
		if err != nil {
			return nil, status.Error(codes.ResourceExhausted, err.Error())
		}
		resp, err := h(ctx, req)
		if errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded {
			promise.Fail()
		} else {
			promise.Pass()
		}
		return resp, err
	}
}

// aegisLimit puts an aegis limiter in front of the handler the way Kratos'
// ratelimit middleware does: rejected calls fail with RESOURCE_EXHAUSTED
// (Kratos answers 429, which its gRPC transport maps to it), admitted calls
// report their error when done.
func aegisLimit(l aegisratelimit.Limiter) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		done, err := l.Allow()
		if err != nil {
			return nil, status.Error(codes.ResourceExhausted, err.Error())
		}
		resp, err := h(ctx, req)
		done(aegisratelimit.DoneInfo{Err: err})
		return resp, err
	}
}

// burnSink keeps the compiler from dropping the work of burn.
var burnSink atomic.Uint64

// burn spins the CPU for n rounds of a xorshift generator.
func burn(n int) {
	x := uint64(n) | 1
	for range n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	burnSink.Add(x)
}

// calibrate returns the rounds of burn that take about d of CPU on this
// core: the fastest of a few timed runs, which is the least disturbed by
// other processes.
func calibrate(d time.Duration) int {
	const probe = 1 << 20
	best := time.Duration(1<<63 - 1)
	for range 7 {
		t0 := time.Now()
		burn(probe)
		best = min(best, time.Since(t0))
	}
	return max(cpuChunks, int(float64(probe)*float64(d)/float64(max(best, 1))))
}

// cpuWorkInterceptor is the handler's CPU work: rounds of burn in
// cpuChunks chunks, giving up between chunks once the call's context is
// done, as a handler that checks its context does, and letting other
// goroutines run between chunks, as a handler that does I/O, takes locks
// or logs does. Without those scheduling points, on one core, each handler
// runs to its end once it has passed the interceptors, the calls waiting
// for the core wait in the Go scheduler's run queue before any
// interceptor, and no limit inside the process sees them (see the notes).
func cpuWorkInterceptor(rounds int) grpc.UnaryServerInterceptor {
	chunk := rounds / cpuChunks
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		for range cpuChunks {
			if err := ctx.Err(); err != nil {
				return nil, status.FromContextError(err).Err()
			}
			burn(chunk)
			runtime.Gosched()
		}
		return h(ctx, req)
	}
}

// cpuServerMain is the server process: it joins its cgroups and pins
// itself to its core (then starts again, so that the libraries see their
// cgroup from the start), calibrates the work, serves on 127.0.0.1, prints
// "ready <target>" on out and serves until in reaches EOF.
func cpuServerMain(in io.Reader, out io.Writer) error {
	if join, ok := os.LookupEnv(envCPUServerJoin); ok {
		return joinAndRestart(join)
	}
	// go-zero logs to stdout by default, a line per shed call and its
	// statistics every minute; the writer still formats every line.
	logx.SetWriter(logx.NewWriter(io.Discard))
	logx.DisableStat()
	load.DisableLog()
	inner, err := cpuProtection(os.Getenv(envCPUServer))
	if err != nil {
		return err
	}
	if name := os.Getenv(envCPUServerProfile); name != "" {
		f, err := os.Create(name)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rounds := calibrate(cpuWork)
	srv, err := testservice.Start(testservice.WithTCP(""),
		testservice.WithServerOptions(grpc.ChainUnaryInterceptor(append(inner, cpuWorkInterceptor(rounds))...)))
	if err != nil {
		return err
	}
	defer srv.Stop()
	if _, err := fmt.Fprintf(out, "ready %s\n", srv.Target()); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, in)
	return err
}

// joinAndRestart pins the thread to the core of envCPUServerCore if set,
// raises its priority to cpuServerNice if it may, writes the process's pid
// to every cgroup.procs file of join (comma-separated, possibly none), and
// replaces the process with a fresh start of the same binary, which
// inherits all three, so that every library reads its cgroup from the
// start.
func joinAndRestart(join string) error {
	runtime.LockOSThread() // the affinity is the thread's, and exec keeps the calling thread's
	if c := os.Getenv(envCPUServerCore); c != "" {
		core, err := strconv.Atoi(c)
		if err != nil {
			return fmt.Errorf("%s=%q: %v", envCPUServerCore, c, err)
		}
		if err := pinToCore(core); err != nil {
			return fmt.Errorf("pinning to CPU %d: %w", core, err)
		}
	}
	// Other processes on the machine would take part of the core, and the
	// capacity measured first would not hold later: the server runs at a
	// higher priority when it may (as root), best effort otherwise.
	raisePriority(cpuServerNice)
	pid := []byte(strconv.Itoa(os.Getpid()))
	var dirs []string
	for f := range strings.SplitSeq(join, ",") {
		if f == "" {
			continue
		}
		if err := os.WriteFile(f, pid, 0o644); err != nil {
			return fmt.Errorf("joining cgroup: %w", err)
		}
		dirs = append(dirs, filepath.Dir(f))
	}
	if len(dirs) > 0 {
		if err := viewCgroupsAsRoot(dirs); err != nil {
			return fmt.Errorf("mounting the cgroups as roots: %w", err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, envCPUServerJoin+"=") || strings.HasPrefix(kv, envCPUServerCore+"=")
	})
	return execSelf(self, os.Args, env)
}

// readReady reads the server process's "ready <target>" line.
func readReady(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("server process: %w", err)
	}
	target, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	if !ok || target == "" {
		return "", fmt.Errorf("server process: unexpected line %q", line)
	}
	return target, nil
}
