// Command fleet shows one rate-limit quota shared by three gRPC server
// processes through Redis (package redisfleet), and what happens when
// Redis goes away.
//
// It starts a redis-server on a free loopback port (or uses the one given
// with -redis), then starts itself three times as server processes. Each
// runs the test service behind server.New with a rate limit of 30 calls a
// second per caller (bursts of 10) whose Store is a redisfleet quota, so
// that the three servers together admit 30 a second for a caller, not 90.
// A client sends one caller's calls, twice the quota, 80% of them to the
// first server and 10% to each of the others, in three phases:
//
//  1. shared: the servers together admit about the quota;
//  2. Redis down (killed; only when the program started it): each server
//     falls back within a second to its share, a third of the quota, and
//     says so; the busy server admits about its third, the others what
//     they are asked for;
//  3. Redis back (restarted, empty): the servers return to the shared
//     quota.
//
// The figures depend on the machine's timing; the program prints what each
// server admitted per second in each phase.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/internal/redistest"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/ratelimit"
	"github.com/engineeringlabs/grpc-resilience/redisfleet"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// The quota every server enforces for each caller, across the fleet.
const (
	rate    = 30
	burst   = 10
	servers = 3
	header  = "x-caller"
)

// shares is the part of the client's calls each server gets.
var shares = [servers]float64{0.8, 0.1, 0.1}

func main() {
	redisAddr := flag.String("redis", "", "address of a Redis to use; empty starts a redis-server")
	role := flag.String("role", "", "internal: \"server\" runs one server process")
	phase := flag.Duration("phase", 3*time.Second, "length of each phase")
	flag.Parse()
	var err error
	if *role == "server" {
		err = serve(*redisAddr)
	} else {
		err = run(os.Stdout, *redisAddr, *phase)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

// serve is one server process: it prints its address, serves until its
// stdin closes, and reports the limiter's fallbacks and recoveries.
func serve(redisAddr string) error {
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{redisAddr}, DisableCache: true})
	if err != nil {
		return err
	}
	defer client.Close()
	fleet, err := redisfleet.NewLimiter(redisfleet.LimiterConfig{
		Client: client,
		// Generous for a laptop running three servers, a client and Redis:
		// a round trip that takes longer is decided by the local share.
		Timeout:           50 * time.Millisecond,
		HeartbeatInterval: 200 * time.Millisecond,
		RetryInterval:     200 * time.Millisecond,
		OnFallback: func(e redisfleet.FallbackEvent) {
			fmt.Printf("event falls back to 1/%d of the quota: %v\n", e.Processes, e.Reason)
		},
		OnRecover: func(e redisfleet.RecoverEvent) {
			fmt.Printf("event back on the shared quota after %v\n", e.Down.Round(100*time.Millisecond))
		},
	})
	if err != nil {
		return err
	}
	defer fleet.Close()
	rs, err := server.New(server.Config{RateLimit: server.RateLimitConfig{
		Rate: rate, Burst: burst, PartitionBy: server.PartitionByHeader, Header: header,
		Store: func(quota string, q server.RateQuota) ratelimit.Store {
			return fleet.Quota(quota, q.Rate, q.Burst)
		},
	}})
	if err != nil {
		return err
	}
	srv, err := testservice.Start(testservice.WithTCP("127.0.0.1:0"), testservice.WithServerOptions(
		grpc.ChainUnaryInterceptor(rs.UnaryServerInterceptor()),
	))
	if err != nil {
		return err
	}
	defer srv.Stop()
	fmt.Printf("listening %s\n", srv.Target())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
	return nil
}

// child is a server process.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	target string
}

func run(out io.Writer, redisAddr string, phase time.Duration) error {
	var rsrv *redistest.Server
	if redisAddr == "" {
		dir, err := os.MkdirTemp("", "fleet-redis")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if rsrv, err = redistest.Launch(dir); err != nil {
			return err
		}
		defer rsrv.Stop()
		redisAddr = rsrv.Addr()
	}
	fmt.Fprintf(out, "redis on %s; quota %d calls/s per caller (bursts of %d), shared by %d servers\n", redisAddr, rate, burst, servers)

	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var outMu sync.Mutex
	children := make([]*child, servers)
	for i := range children {
		c := &child{cmd: exec.Command(exe, "-role=server", "-redis="+redisAddr)}
		c.cmd.Stderr = os.Stderr
		stdout, err := c.cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			return err
		}
		if err := c.cmd.Start(); err != nil {
			return err
		}
		defer func() { c.stdin.Close(); c.cmd.Wait() }()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if t, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				c.target = t
				break
			}
		}
		if c.target == "" {
			return fmt.Errorf("server %d did not start", i)
		}
		go func() { // relay the server's events
			for sc.Scan() {
				outMu.Lock()
				fmt.Fprintf(out, "  server %d: %s\n", i, strings.TrimPrefix(sc.Text(), "event "))
				outMu.Unlock()
			}
		}()
		children[i] = c
	}

	clients := make([]testingv1.TestServiceClient, servers)
	for i, c := range children {
		conn, err := grpc.NewClient(c.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		clients[i] = testingv1.NewTestServiceClient(conn)
		if err := call(clients[i], "warm-up"); err != nil {
			return fmt.Errorf("server %d: %w", i, err)
		}
	}

	report := func(name string, admitted [servers]int64) {
		outMu.Lock()
		defer outMu.Unlock()
		var total int64
		fmt.Fprintf(out, "%s:", name)
		for i, n := range admitted {
			total += n
			fmt.Fprintf(out, " server %d %.1f/s,", i, float64(n)/phase.Seconds())
		}
		fmt.Fprintf(out, " in all %.1f/s (quota %d/s, %.1f/s with a full burst at the start)\n",
			float64(total)/phase.Seconds(), rate, rate+burst/phase.Seconds())
	}

	report("shared", load(clients, phase))
	if rsrv == nil {
		fmt.Fprintln(out, "(Redis was given with -redis: the outage is not shown)")
		return nil
	}
	rsrv.Kill()
	fmt.Fprintln(out, "redis killed")
	report("redis down", load(clients, phase))
	if err := rsrv.Restart(); err != nil {
		return err
	}
	fmt.Fprintln(out, "redis restarted")
	report("redis back", load(clients, phase))
	return nil
}

// load sends twice the quota for d, spread over the servers by shares,
// and returns how many calls each server admitted.
func load(clients []testingv1.TestServiceClient, d time.Duration) [servers]int64 {
	var admitted [servers]atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for i, c := range clients {
		every := time.Duration(float64(time.Second) / (2 * rate * shares[i]))
		wg.Go(func() {
			next := time.Now()
			for time.Now().Before(end) {
				if err := call(c, "load"); err == nil {
					admitted[i].Add(1)
				} else if status.Code(err) != codes.ResourceExhausted {
					fmt.Fprintln(os.Stderr, "fleet: call:", err)
				}
				next = next.Add(every)
				time.Sleep(time.Until(next)) // pace the calls
			}
		})
	}
	wg.Wait()
	var n [servers]int64
	for i := range n {
		n[i] = admitted[i].Load()
	}
	return n
}

func call(c testingv1.TestServiceClient, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, header, "tenant-a")
	_, err := c.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: id}})
	return err
}
