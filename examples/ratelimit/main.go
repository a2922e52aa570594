// Command ratelimit shows the rate limits of grpc-resilience on both sides
// of a gRPC call. The server gives each caller, named by its x-caller
// header, a quota of 5 calls a second with bursts of 5 (server.Config's
// RateLimit); a call over its caller's quota is refused at once with
// RESOURCE_EXHAUSTED, a google.rpc.RetryInfo saying when the next permit
// comes, and a google.rpc.QuotaFailure naming the quota.
//
// Two clients call it over loopback TCP. The plain one sends its calls
// as fast as it can, and most are refused. The resilient one limits its
// own rate (interceptors.RateLimitPolicy with Wait, so that it waits for
// a permit rather than failing) and retries a refused call after the delay
// the server's RetryInfo asked for: every one of its calls gets through.
//
// Only facts that do not depend on the machine's speed are printed: the
// rates are low enough that the plain client's calls all arrive within
// one interval between permits, and every call has a generous deadline.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// The server's quota per caller, and how many calls each client makes.
const (
	rate   = 5 // calls per second per caller
	burst  = 5
	nPlain = 20
	nCalls = 15
)

// The callers' keys. A key may be a secret (an API key): the server never
// echoes it, neither in refusals nor in its events.
const (
	plainKey     = "plain-key-5f0c1e"
	resilientKey = "resilient-key-a93d27"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ratelimit:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	// The quota classes of the server's rate-limit events, which name the
	// quota and never the caller.
	var mu sync.Mutex
	classes := map[string]bool{}
	rs, err := server.New(server.Config{
		RateLimit: server.RateLimitConfig{Rate: rate, Burst: burst, PartitionBy: server.PartitionByHeader, Header: "x-caller"},
		Observer: server.Observer{OnEvent: func(_ context.Context, e server.Event) {
			if e.Kind == server.EventRateLimited {
				mu.Lock()
				classes[e.Key] = true
				mu.Unlock()
			}
		}},
	})
	if err != nil {
		return err
	}
	srv, err := testservice.Start(testservice.WithTCP("127.0.0.1:0"), testservice.WithServerOptions(
		grpc.ChainUnaryInterceptor(rs.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(rs.StreamServerInterceptor()),
	))
	if err != nil {
		return err
	}
	defer srv.Stop()
	fmt.Fprintf(out, "server: %d calls a second per caller (header x-caller), bursts of %d\n", rate, burst)

	plainConn, err := srv.Dial(grpc.WithDisableRetry())
	if err != nil {
		return err
	}
	defer plainConn.Close()
	plain := testingv1.NewTestServiceClient(plainConn)

	// The resilient client paces itself at the server's rate, but with a
	// larger burst: it does not know the server's burst, and learns from
	// the RetryInfo of each refusal when to try again.
	var rec recorder
	pipeline, err := interceptors.NewClient(interceptors.Config{
		Default: interceptors.Policy{
			Retry:     &interceptors.RetryPolicy{MaxAttempts: 3},
			RateLimit: &interceptors.RateLimitPolicy{Rate: rate, Burst: 2 * burst, Wait: true},
		},
		Observer: rec.observer(),
	})
	if err != nil {
		return err
	}
	resConn, err := srv.Dial(grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(pipeline.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(pipeline.StreamClientInterceptor()))
	if err != nil {
		return err
	}
	defer resConn.Close()
	resilient := testingv1.NewTestServiceClient(resConn)

	// Connect both clients first, as a caller of its own, so that
	// connecting takes none of the quota's time.
	for _, c := range []testingv1.TestServiceClient{plain, resilient} {
		if err := call(c, "warm-up", "warm-up"); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	rec.reset()

	fmt.Fprintf(out, "\nplain client: %d calls, one after the other, as fast as it can\n", nPlain)
	var admitted, refused, withRetryInfo, echoed int
	subjects := map[string]bool{}
	for i := range nPlain {
		err := call(plain, plainKey, fmt.Sprintf("plain-%d", i))
		if err == nil {
			admitted++
			continue
		}
		st := status.Convert(err)
		if st.Code() != codes.ResourceExhausted {
			return fmt.Errorf("plain call %d: %v", i, err)
		}
		refused++
		if strings.Contains(st.Message(), plainKey) {
			echoed++
		}
		for _, d := range st.Details() {
			switch d := d.(type) {
			case *errdetails.RetryInfo:
				withRetryInfo++
			case *errdetails.QuotaFailure:
				for _, v := range d.GetViolations() {
					subjects[v.GetSubject()] = true
					if strings.Contains(v.GetSubject()+v.GetDescription(), plainKey) {
						echoed++
					}
				}
			}
		}
	}
	handled := 0
	for i := range nPlain {
		handled += srv.Service().Attempts(fmt.Sprintf("plain-%d", i))
	}
	fmt.Fprintf(out, "  admitted: %d of %d (the burst); the handler ran %d times\n", admitted, nPlain, handled)
	fmt.Fprintf(out, "  refused with RESOURCE_EXHAUSTED: %d\n", refused)
	fmt.Fprintf(out, "  refusals with RetryInfo: %s\n", allOf(withRetryInfo, refused))
	fmt.Fprintf(out, "  QuotaFailure subjects: %s\n", strings.Join(sortedKeys(subjects), ", "))
	fmt.Fprintf(out, "  refusals that echo the caller's key: %d\n", echoed)

	fmt.Fprintf(out, "\nresilient client: %d calls, one after the other, pacing itself and honouring RetryInfo\n", nCalls)
	failed := 0
	for i := range nCalls {
		if err := call(resilient, resilientKey, fmt.Sprintf("resilient-%d", i)); err != nil {
			failed++
			fmt.Fprintf(out, "  call %d failed: %v\n", i, err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	fmt.Fprintf(out, "  admitted: %d of %d, failed: %d\n", nCalls-failed, nCalls, failed)
	fmt.Fprintf(out, "  attempts per call: %s\n", attemptsBucket(rec.attempts))
	fmt.Fprintf(out, "  server refusals with RetryInfo: %s\n", allOf(rec.withRetryInfo, rec.refused))
	fmt.Fprintf(out, "  retries that waited at least the delay the server asked: %s\n", allOf(rec.waitedAsAsked, rec.retries))
	fmt.Fprintf(out, "  attempts its own limiter refused: %d (it waited for a permit instead)\n", rec.limited)

	mu.Lock()
	defer mu.Unlock()
	fmt.Fprintf(out, "\nserver: rate-limit events keyed by %s\n", strings.Join(sortedKeys(classes), ", "))
	return nil
}

// call makes one Unary call as caller, with a generous deadline.
func call(c testingv1.TestServiceClient, caller, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-caller", caller)
	_, err := c.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: id}})
	return err
}

// recorder watches the resilient client's attempts through its Observer.
// Calls run one after the other, so one pending refusal is enough.
type recorder struct {
	mu            sync.Mutex
	attempts      []int         // per call, the attempts that reached the server
	refused       int           // attempts the server refused with RESOURCE_EXHAUSTED
	withRetryInfo int           // of those, the ones with a RetryInfo detail
	asked         time.Duration // the delay the last refusal asked for
	refusedAt     time.Time     // when the last refusal came back
	retries       int           // attempts made after a refusal
	waitedAsAsked int           // of those, the ones that started no earlier than asked
	limited       int           // attempts the client's own limiter refused
}

// reset forgets what the recorder saw so far.
func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts, r.refused, r.withRetryInfo, r.retries, r.waitedAsAsked, r.limited = nil, 0, 0, 0, 0, 0
	r.asked, r.refusedAt = 0, time.Time{}
}

func (r *recorder) observer() interceptors.Observer {
	return interceptors.Observer{
		OnAttemptStart: func(ctx context.Context, info interceptors.AttemptInfo) context.Context {
			r.mu.Lock()
			defer r.mu.Unlock()
			if info.Attempt > 1 && !r.refusedAt.IsZero() {
				r.retries++
				if info.PushbackHonoured && time.Since(r.refusedAt) >= r.asked {
					r.waitedAsAsked++
				}
				r.refusedAt = time.Time{}
			}
			return ctx
		},
		OnAttemptEnd: func(_ context.Context, info interceptors.AttemptInfo, err error) {
			st := status.Convert(err)
			if st.Code() != codes.ResourceExhausted {
				return
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			r.refused++
			for _, d := range st.Details() {
				if ri, ok := d.(*errdetails.RetryInfo); ok {
					r.withRetryInfo++
					r.asked = ri.GetRetryDelay().AsDuration()
					r.refusedAt = time.Now()
				}
			}
		},
		OnCallEnd: func(_ context.Context, info interceptors.CallInfo, _ error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.attempts = append(r.attempts, info.Attempts)
		},
		OnEvent: func(_ context.Context, e interceptors.Event) {
			if e.Kind == interceptors.EventRateLimited && errors.Is(e.Err, resilience.ErrRateLimited) {
				r.mu.Lock()
				r.limited++
				r.mu.Unlock()
			}
		},
	}
}

// allOf says whether n of total is all of them, and how many that is.
func allOf(n, total int) string {
	switch {
	case total == 0:
		return "none to check"
	case n == total:
		return "all of them"
	}
	return fmt.Sprintf("%d of %d", n, total)
}

// attemptsBucket says how many attempts the calls took, in terms that do
// not depend on timing: how many calls needed a retry varies with the
// machine's speed, the bounds do not.
func attemptsBucket(attempts []int) string {
	if len(attempts) == 0 {
		return "no calls"
	}
	lo, hi := slices.Min(attempts), slices.Max(attempts)
	switch {
	case hi <= 1:
		return "1 each; no call needed a retry"
	case lo == 1 && hi == 2:
		return "1 or 2; some calls needed one retry, none more"
	}
	return fmt.Sprintf("from %d to %d", lo, hi)
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
