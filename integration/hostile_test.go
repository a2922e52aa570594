package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/config"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// hostilePolicy retries up to 3 attempts 1ms apart without a budget, so
// that the number of attempts shows the verdict on what the server sent.
func hostilePolicy() interceptors.Policy {
	return interceptors.Policy{Retry: &interceptors.RetryPolicy{
		MaxAttempts: 3, Backoff: interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: time.Millisecond}, Jitter: interceptors.JitterNone, Budget: interceptors.NoBudget,
	}}
}

// TestHostilePushback sends malformed, negative and huge
// grpc-retry-pushback-ms trailers and google.rpc.RetryInfo delays through
// the real server and client, on an attempt that fails once: the attempts
// the call makes show the verdict the classify package documents.
func TestHostilePushback(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	leakCheck(t)
	e := newEnv(t, "hostile-pushback", envOptions{policy: hostilePolicy(), serverStrict: true})
	const (
		retried = 2 // the retry succeeds
		vetoed  = 1 // the first failure is final
	)
	huge := strings.Repeat("9", 1000)
	cases := []struct {
		name      string
		code      codes.Code
		pushback  string
		retryInfo *durationpb.Duration
		attempts  int
	}{
		{"no pushback", codes.Unavailable, "", nil, retried},
		{"zero", codes.Unavailable, "0", nil, retried},
		{"small", codes.Unavailable, "3", nil, retried},
		{"spaces", codes.Unavailable, " 3 ", nil, retried},
		{"garbage", codes.Unavailable, "soon", nil, vetoed},
		{"negative", codes.Unavailable, "-1", nil, vetoed},
		{"minus zero", codes.Unavailable, "-0", nil, vetoed},
		{"plus sign", codes.Unavailable, "+3", nil, vetoed},
		{"fraction", codes.Unavailable, "1.5", nil, vetoed},
		{"exponent", codes.Unavailable, "1e3", nil, vetoed},
		{"hex", codes.Unavailable, "0x10", nil, vetoed},
		{"non-ASCII digits", codes.Unavailable, "٣", nil, vetoed},
		{"blank", codes.Unavailable, " ", nil, vetoed},
		// Longer than the call's deadline: the retry would end past it, so
		// the call ends at once with the attempt's error.
		{"huge", codes.Unavailable, "99999999999999999999", nil, vetoed},
		{"max int64 ms", codes.Unavailable, strconv.FormatInt(math.MaxInt64, 10), nil, vetoed},
		{"1000 digits", codes.Unavailable, huge, nil, vetoed},
		{"exhausted without pushback", codes.ResourceExhausted, "", nil, vetoed},
		{"exhausted with pushback", codes.ResourceExhausted, "3", nil, retried},
		{"exhausted with garbage", codes.ResourceExhausted, "x", nil, vetoed},
		{"retry info zero", codes.ResourceExhausted, "", durationpb.New(0), retried},
		{"retry info small", codes.Unavailable, "", durationpb.New(3 * time.Millisecond), retried},
		{"retry info negative", codes.Unavailable, "", durationpb.New(-time.Second), vetoed},
		{"retry info huge", codes.Unavailable, "", &durationpb.Duration{Seconds: 315576000000}, vetoed},
		// The trailer, gRPC's own mechanism, wins over RetryInfo.
		{"garbage trailer beats retry info", codes.Unavailable, "x", durationpb.New(time.Millisecond), vetoed},
		{"trailer beats negative retry info", codes.Unavailable, "1", durationpb.New(-time.Second), retried},
	}
	for _, tc := range cases {
		res := e.do(t.Context(), call{kind: kindUnary, timeout: 5 * time.Second, behavior: &testingv1.Behavior{
			FailAttempts: 1, FailCode: uint32(tc.code), PushbackMs: tc.pushback, RetryInfoDelay: tc.retryInfo,
		}})
		e.inv.check()
		got := e.svc.Attempts(res.id)
		switch {
		case got != tc.attempts:
			e.inv.fail("%s: %d attempts, want %d (err %v)", tc.name, got, tc.attempts, res.err)
		case tc.attempts == retried && res.err != nil:
			e.inv.fail("%s: retried call failed: %v", tc.name, res.err)
		case tc.attempts == vetoed && status.Code(res.err) != tc.code:
			e.inv.fail("%s: ended with %v, want the attempt's %v", tc.name, res.err, tc.code)
		case res.elapsed > time.Second:
			e.inv.fail("%s: took %v: a pushback past the deadline must end the call at once", tc.name, res.elapsed)
		}
	}
	e.verify()
}

// garbage answers the first attempt of the calls it knows with a status
// and trailer built by hand, which the test service cannot send: details
// that do not decode, invalid durations, repeated trailers.
type garbage struct {
	mu      sync.Mutex
	answers map[string]func(ctx context.Context) error
}

func (g *garbage) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id, n := callOf(ctx)
	g.mu.Lock()
	answer := g.answers[id]
	g.mu.Unlock()
	if answer == nil || n > 1 {
		return handler(ctx, req)
	}
	return nil, answer(ctx)
}

// withDetails returns an error of code with the given details, unchecked.
func withDetails(code codes.Code, details ...*anypb.Any) error {
	return status.FromProto(&spb.Status{Code: int32(code), Message: "garbage", Details: details}).Err()
}

// retryInfoAny wraps raw bytes as a google.rpc.RetryInfo detail.
func retryInfoAny(raw []byte) *anypb.Any {
	return &anypb.Any{TypeUrl: "type.googleapis.com/google.rpc.RetryInfo", Value: raw}
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHostileStatusDetails answers attempts with statuses and trailers no
// well-behaved server sends, through the real pipeline: RetryInfo that does
// not decode, invalid or missing delays, a thousand junk details, repeated
// pushback trailers, a huge status message. None may panic; each gets the
// verdict classify documents.
func TestHostileStatusDetails(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	leakCheck(t)
	g := &garbage{answers: map[string]func(context.Context) error{}}
	e := newEnv(t, "hostile-details", envOptions{policy: hostilePolicy(), serverStrict: true, front: []grpc.UnaryServerInterceptor{g.unary}})
	junk := make([]*anypb.Any, 1000)
	r := rand.New(rand.NewPCG(chaosSeed, 3))
	for i := range junk {
		raw := make([]byte, r.IntN(64))
		for j := range raw {
			raw[j] = byte(r.Uint32())
		}
		junk[i] = &anypb.Any{TypeUrl: "type.example.com/junk." + strconv.Itoa(i), Value: raw}
	}
	valid := retryInfoAny(marshal(t, &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Millisecond)}))
	cases := []struct {
		name     string
		answer   func(ctx context.Context) error
		attempts int
	}{
		{"retry info that does not decode", func(context.Context) error {
			return withDetails(codes.Unavailable, retryInfoAny([]byte{0xff, 0xff, 0xff, 0xff}))
		}, 1},
		{"retry info without delay", func(context.Context) error {
			return withDetails(codes.Unavailable, retryInfoAny(marshal(t, &errdetails.RetryInfo{})))
		}, 1},
		{"retry info with negative nanos", func(context.Context) error {
			return withDetails(codes.Unavailable, retryInfoAny(marshal(t, &errdetails.RetryInfo{RetryDelay: &durationpb.Duration{Seconds: 1, Nanos: -5}})))
		}, 1},
		{"retry info out of range", func(context.Context) error {
			return withDetails(codes.Unavailable, retryInfoAny(marshal(t, &errdetails.RetryInfo{RetryDelay: &durationpb.Duration{Seconds: math.MaxInt64}})))
		}, 1},
		{"bad retry info before a good one", func(context.Context) error {
			return withDetails(codes.ResourceExhausted, retryInfoAny([]byte{0x0a, 0xff}), valid)
		}, 1},
		{"good retry info after junk", func(context.Context) error {
			return withDetails(codes.ResourceExhausted, append(append([]*anypb.Any(nil), junk...), valid)...)
		}, 2},
		{"a thousand junk details", func(context.Context) error {
			return withDetails(codes.Unavailable, junk...)
		}, 2},
		{"empty type URL", func(context.Context) error {
			return withDetails(codes.Unavailable, &anypb.Any{})
		}, 2},
		{"two pushback trailers", func(ctx context.Context) error {
			_ = grpc.SetTrailer(ctx, metadata.Pairs(interceptors.PreviousAttemptsHeader, "7", "grpc-retry-pushback-ms", "1", "grpc-retry-pushback-ms", "1"))
			return status.Error(codes.Unavailable, "two trailers")
		}, 1},
		{"64 KiB status message", func(context.Context) error {
			return status.Error(codes.Unavailable, strings.Repeat("é", 32<<10))
		}, 2},
		{"invalid UTF-8 status message", func(context.Context) error {
			return status.Error(codes.Unavailable, "\xff\xfe\xfd")
		}, 2},
	}
	for _, tc := range cases {
		id := e.newID()
		g.mu.Lock()
		g.answers[id] = tc.answer
		g.mu.Unlock()
		res := e.do(t.Context(), call{kind: kindUnary, timeout: 5 * time.Second, behavior: &testingv1.Behavior{CallId: id}})
		e.inv.check()
		got := len(e.rec.attemptsOf(id))
		switch {
		case got != tc.attempts:
			e.inv.fail("%s: %d attempts, want %d (err %v)", tc.name, got, tc.attempts, res.err)
		case tc.attempts == 2 && res.err != nil:
			e.inv.fail("%s: retried call failed: %v", tc.name, res.err)
		case tc.attempts == 1 && res.err == nil:
			e.inv.fail("%s: the vetoed call succeeded", tc.name)
		}
	}
	e.verify()
}

// TestHostileValues passes huge, negative and past values where the API
// takes numbers and deadlines: each does what its documentation says, and
// bad configuration is an error naming the field.
func TestHostileValues(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	leakCheck(t)
	e := newEnv(t, "hostile-values", envOptions{serverStrict: true, policy: interceptors.Policy{Retry: &interceptors.RetryPolicy{
		MaxAttempts: 3, Backoff: interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: time.Millisecond}, Budget: interceptors.NoBudget, AttemptTimeout: time.Second,
	}}})
	failTwice := func() *testingv1.Behavior {
		return &testingv1.Behavior{FailAttempts: 2, FailCode: uint32(codes.Unavailable)}
	}
	cases := []struct {
		name     string
		call     call
		attempts int
		code     codes.Code
	}{
		{"negative max attempts counts as 1", call{behavior: failTwice(), opts: []grpc.CallOption{interceptors.WithMaxAttempts(-5)}}, 1, codes.Unavailable},
		{"max int attempts", call{behavior: failTwice(), opts: []grpc.CallOption{interceptors.WithMaxAttempts(math.MaxInt)}}, 3, codes.OK},
		{"negative attempt timeout means none", call{kind: kindIdempotent, behavior: &testingv1.Behavior{Sleep: durationpb.New(20 * time.Millisecond)},
			opts: []grpc.CallOption{interceptors.WithAttemptTimeout(-time.Second)}}, 1, codes.OK},
		{"max duration attempt timeout", call{kind: kindIdempotent, behavior: failTwice(),
			opts: []grpc.CallOption{interceptors.WithAttemptTimeout(math.MaxInt64)}}, 3, codes.OK},
		{"negative sleep", call{behavior: &testingv1.Behavior{Sleep: durationpb.New(-time.Hour)}}, 1, codes.OK},
		{"min int32 fail attempts fails every attempt", call{behavior: &testingv1.Behavior{FailAttempts: math.MinInt32, FailCode: uint32(codes.InvalidArgument)}}, 1, codes.InvalidArgument},
		{"unknown status code", call{behavior: &testingv1.Behavior{FailAttempts: -1, FailCode: 1000}}, 1, codes.Code(1000)},
	}
	for _, tc := range cases {
		tc.call.timeout = 5 * time.Second
		res := e.do(t.Context(), tc.call)
		e.inv.check()
		if got := e.svc.Attempts(res.id); got != tc.attempts || status.Code(res.err) != tc.code {
			e.inv.fail("%s: %d attempts, %v; want %d, %v", tc.name, got, res.err, tc.attempts, tc.code)
		}
	}

	// A deadline a century away and one already past.
	far, cancel := context.WithDeadline(t.Context(), time.Now().Add(100*365*24*time.Hour))
	defer cancel()
	if res := e.do(far, call{behavior: failTwice()}); res.err != nil {
		t.Errorf("a call with a deadline a century away: %v", res.err)
	}
	past, cancel2 := context.WithDeadline(t.Context(), time.Now().Add(-time.Hour))
	defer cancel2()
	res := e.do(past, call{})
	if status.Code(res.err) != codes.DeadlineExceeded || e.svc.Attempts(res.id) != 0 {
		t.Errorf("a call whose deadline passed an hour ago: %v after %d attempts, want DEADLINE_EXCEEDED and none", res.err, e.svc.Attempts(res.id))
	}
	e.verify()

	// Configuration: out-of-range numbers are errors naming field and
	// value, never panics or silent clamping.
	badClient := []struct {
		field string // the FieldError's path
		value any
		p     interceptors.Policy
	}{
		{"Default.Retry.MaxAttempts", math.MinInt, interceptors.Policy{Retry: &interceptors.RetryPolicy{MaxAttempts: math.MinInt}}},
		{"Default.Retry.AttemptTimeout", time.Duration(math.MinInt64), interceptors.Policy{Retry: &interceptors.RetryPolicy{AttemptTimeout: math.MinInt64}}},
		{"Default.DefaultTimeout", time.Duration(-1), interceptors.Policy{DefaultTimeout: -1}},
		{"Default.Bulkhead.Limit", math.MinInt, interceptors.Policy{Bulkhead: &interceptors.BulkheadPolicy{Limit: math.MinInt}}},
		{"Default.Hedging.Percentile", nil, interceptors.Policy{Hedging: &interceptors.HedgingPolicy{Percentile: math.NaN()}}}, // NaN != NaN
	}
	for _, tc := range badClient {
		_, err := interceptors.NewClient(interceptors.Config{Default: tc.p})
		fes := resilience.FieldErrors(err)
		if len(fes) != 1 || fes[0].Field != tc.field || (tc.value != nil && fes[0].Value != tc.value) {
			t.Errorf("NewClient with a bad %s: %v, want one FieldError naming it with its value", tc.field, err)
		}
	}
	badServer := []struct {
		field string
		f     server.Fault
	}{
		{"ErrorRate", server.Fault{ErrorRate: math.NaN()}},
		{"ErrorRate", server.Fault{ErrorRate: math.Inf(1)}},
		{"TailRate", server.Fault{TailRate: 2}},
		{"Latency", server.Fault{Latency: math.MinInt64}},
		{"Pushback", server.Fault{Pushback: -1}},
	}
	chaos := e.pipe.Chaos()
	for _, tc := range badServer {
		err := chaos.Set(server.FaultConfig{All: tc.f})
		if fes := resilience.FieldErrors(err); len(fes) == 0 || fes[0].Field != "All."+tc.field {
			t.Errorf("Chaos.Set with a bad %s: %v, want a FieldError naming it first", tc.field, err)
		}
	}
	_, err := server.New(server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, MaxPartitions: -1, PartitionBy: server.PartitionByMethod}})
	if fes := resilience.FieldErrors(err); len(fes) != 1 || fes[0].Field != "Bulkhead.MaxPartitions" || fes[0].Value != -1 {
		t.Errorf("server.New with MaxPartitions -1: %v, want one FieldError naming it", err)
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestHostileCallerKeys sends 100,000 distinct caller keys to a server
// bulkhead partitioned by caller: it keeps its cap of partitions (a new key
// takes the place of an idle one, or shares the overflow partition), and
// its memory stays bounded. The keys go to the server pipeline's
// interceptor itself, with the incoming metadata gRPC would give it, and a
// few thousand more go over loopback TCP.
func TestHostileCallerKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	leakCheck(t)
	const (
		keys          = 100_000
		maxPartitions = 64
		header        = "x-caller-id"
		// heapBound is generous: 100,000 partitions would take tens of MiB.
		heapBound = 8 << 20
	)
	cfg := server.BulkheadConfig{Limit: 2, PartitionBy: server.PartitionByHeader, Header: header, MaxPartitions: maxPartitions}
	srv, err := server.New(server.Config{Bulkhead: cfg})
	if err != nil {
		t.Fatal(err)
	}
	bh := srv.Bulkhead()
	intercept := srv.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: testingv1.TestService_Unary_FullMethodName}
	ok := func(context.Context, any) (any, error) { return struct{}{}, nil }
	before := heapInUse()
	var wg sync.WaitGroup
	var shedMu sync.Mutex
	shed := 0
	for w := range 4 {
		wg.Go(func() {
			n := 0
			for i := w; i < keys; i += 4 {
				ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(header, "caller-"+strconv.Itoa(i)))
				if _, err := intercept(ctx, nil, info, ok); err != nil {
					if status.Code(err) != codes.ResourceExhausted {
						t.Errorf("key %d: %v", i, err)
						return
					}
					n++
				}
			}
			shedMu.Lock()
			shed += n
			shedMu.Unlock()
		})
	}
	wg.Wait()
	after := heapInUse()
	if got := bh.Partitions().Len(); got != maxPartitions {
		t.Errorf("%d partitions after %d distinct keys, want the cap, %d", got, keys, maxPartitions)
	}
	growth := int64(after) - int64(before)
	if growth > heapBound {
		t.Errorf("the heap grew by %d bytes for %d distinct keys, bound %d", growth, keys, heapBound)
	}
	t.Logf("reliability caller-keys: keys=%d partitions=%d shed=%d heap_growth=%d bytes (bound %d)", keys, bh.Partitions().Len(), shed, growth, heapBound)

	// The same over the network, through the whole pipeline.
	scfg := server.Config{Bulkhead: cfg}
	e := newEnv(t, "caller-keys-network", envOptions{server: scfg})
	var calls sync.WaitGroup
	for w := range 8 {
		calls.Go(func() {
			for i := range 250 {
				ctx := metadata.AppendToOutgoingContext(t.Context(), header, fmt.Sprintf("net-%d-%d", w, i))
				res := e.do(ctx, call{timeout: 5 * time.Second})
				if res.err != nil && status.Code(res.err) != codes.ResourceExhausted {
					t.Errorf("call with a new caller key: %v", res.err)
				}
			}
		})
	}
	calls.Wait()
	if got := e.pipe.Bulkhead().Partitions().Len(); got != maxPartitions {
		t.Errorf("%d partitions after 2,000 distinct keys over the network, want %d", got, maxPartitions)
	}
	e.verify()
}

// TestHostileConfig feeds the config loader what an attacker or a broken
// deployment could: 10 MB inputs, nesting 100,000 deep, an alias bomb,
// invalid UTF-8, files that are not files. Each gets an *config.Error
// with problems, within a bounded time, never a panic.
func TestHostileConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	leakCheck(t)
	const tenMB = 10 << 20
	// bound is how long one parse may take under -race on a loaded 2-core
	// machine; a parse that is linear in its input takes a few seconds.
	const bound = 60 * time.Second
	r := rand.New(rand.NewPCG(chaosSeed, 4))
	random := make([]byte, tenMB)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	var manyPolicies bytes.Buffer
	manyPolicies.WriteString(`{"method_policies":[`)
	for i := 0; manyPolicies.Len() < 2<<20; i++ {
		if i > 0 {
			manyPolicies.WriteByte(',')
		}
		fmt.Fprintf(&manyPolicies, `{"name":[{"service":"s%d.S"}],"retry":{"max_attempts":0}}`, i)
	}
	manyPolicies.WriteString(`]}`)
	var deepBlock strings.Builder
	for i := range 2000 {
		deepBlock.WriteString(strings.Repeat(" ", i) + "a:\n")
	}
	laughs := "a: &a [x,x,x,x,x,x,x,x,x]\n"
	for c := 'b'; c <= 'j'; c++ {
		prev := string(c - 1)
		laughs += fmt.Sprintf("%c: &%c [*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s]\n", c, c, prev, prev, prev, prev, prev, prev, prev, prev, prev)
	}
	cases := []struct {
		name   string
		data   []byte
		format config.Format
	}{
		{"10 MB JSON string in an unknown field", []byte(`{"x":"` + strings.Repeat("a", tenMB) + `"}`), config.FormatJSON},
		{"2 MB of invalid policies", manyPolicies.Bytes(), config.FormatJSON},
		{"10 MB YAML scalar", bytes.Repeat([]byte("a"), tenMB), config.FormatYAML},
		{"10 MB random bytes as YAML", random, config.FormatYAML},
		{"10 MB random bytes as JSON", random, config.FormatJSON},
		{"10 MB random bytes as service config", random, config.FormatServiceConfig},
		{"JSON arrays 100,000 deep", []byte(strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)), config.FormatJSON},
		{"JSON objects 100,000 deep", []byte(strings.Repeat(`{"a":`, 100_000) + "1" + strings.Repeat("}", 100_000)), config.FormatJSON},
		{"JSON objects 100,000 deep as service config", []byte(strings.Repeat(`{"methodConfig":`, 100_000) + "1" + strings.Repeat("}", 100_000)), config.FormatServiceConfig},
		{"YAML flow 100,000 deep", []byte(strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)), config.FormatYAML},
		{"YAML blocks 2,000 deep", []byte(deepBlock.String()), config.FormatYAML},
		{"YAML alias bomb", []byte(laughs), config.FormatYAML},
		{"invalid UTF-8 in YAML", []byte("method_policies:\n- name: [{service: \"\xff\xfe\"}]\n"), config.FormatYAML},
		{"invalid UTF-8 in JSON", []byte("{\"method_policies\":[{\"name\":[{\"service\":\"\xff\"}]}]}"), config.FormatJSON},
		{"NUL bytes", []byte("{\"method_policies\x00\":[]}"), config.FormatAuto},
		{"empty", nil, config.FormatAuto},
		{"huge numbers", []byte(`{"method_policies":[{"name":[{}],"retry":{"max_attempts":1e999,"attempt_timeout":"99999999999999999999s"}}]}`), config.FormatJSON},
		{"negative duration", []byte(`{"method_policies":[{"name":[{}],"retry":{"attempt_timeout":"-1s"}}]}`), config.FormatJSON},
		{"unknown format", []byte(`{}`), config.Format(200)},
	}
	for _, tc := range cases {
		start := time.Now()
		cfg, err := config.Parse(tc.data, tc.format)
		took := time.Since(start)
		if err == nil {
			t.Errorf("%s: accepted: %v", tc.name, cfg.Proto())
			continue
		}
		var cerr *config.Error
		switch {
		case tc.format > config.FormatServiceConfig:
			// An unknown format is a programming error, not a file's.
		case !errors.As(err, &cerr) || len(cerr.Problems) == 0:
			t.Errorf("%s: %v is not a *config.Error with problems", tc.name, err)
		}
		if took > bound {
			t.Errorf("%s: took %v, bound %v", tc.name, took, bound)
		}
		// The message names the problem; it may quote bad values (see
		// RELIABILITY.md, "Known gaps") but must stay linear in the input.
		if msg := err.Error(); len(msg) > 2*len(tc.data)+4096 {
			t.Errorf("%s: a %d-byte error for a %d-byte input", tc.name, len(msg), len(tc.data))
		}
		t.Logf("%s: %v, %d-byte error: %.120s", tc.name, took.Round(time.Millisecond), len(err.Error()), err)
	}

	// Files: a 10 MB file, a directory, a missing file.
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte(`{"x":"`+strings.Repeat("a", tenMB)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{big, dir, filepath.Join(dir, "missing.yaml")} {
		start := time.Now()
		if _, err := config.Load(path); err == nil || !strings.Contains(err.Error(), "config") {
			t.Errorf("Load(%s): %v, want an error", path, err)
		}
		if took := time.Since(start); took > bound {
			t.Errorf("Load(%s) took %v", path, took)
		}
	}
}

// TestCancelAtEveryPoint cancels calls at each point of the pipeline: before
// the call, during a retry's backoff, during an attempt, in a stream before
// and after commit, during hedging and in the client bulkhead's queue, then
// at random points of random calls. Each must end with CANCELLED (or
// succeed when the cancellation came after the end), promptly, and leave
// no goroutine or handler behind.
func TestCancelAtEveryPoint(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	leakCheck(t)
	retrying := make(chan string, 16) // call ids whose retry is waiting
	slow := interceptors.Policy{Retry: &interceptors.RetryPolicy{
		MaxAttempts: 5, Backoff: interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: time.Hour}, Jitter: interceptors.JitterNone, Budget: interceptors.NoBudget,
	}}
	e := newEnv(t, "cancel", envOptions{
		policy: slow, serverStrict: true,
		methodPolicies: map[string]interceptors.Policy{
			testingv1.TestService_Query_FullMethodName: hedgedQuery()[testingv1.TestService_Query_FullMethodName],
			testingv1.TestService_IdempotentUnary_FullMethodName: {
				Retry:    slow.Retry,
				Bulkhead: &interceptors.BulkheadPolicy{Limit: 1, Queue: 1},
			},
		},
		onEvent: func(ctx context.Context, ev interceptors.Event) {
			if tr, ok := ctx.Value(trackKey{}).(*callTrack); ok && ev.Kind == interceptors.EventRetry {
				select {
				case retrying <- tr.id:
				default: // the random phase's retries; nobody waits for them
				}
			}
		},
	})
	hang := func() *testingv1.Behavior {
		return &testingv1.Behavior{Sleep: durationpb.New(time.Hour), StreamMessages: 3}
	}
	// cancelWhen starts c, cancels it once ready returns, and checks that
	// it ends with CANCELLED soon after.
	cancelWhen := func(name string, c call, ready func(id string)) {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		if c.behavior == nil {
			c.behavior = &testingv1.Behavior{}
		}
		c.behavior.CallId = e.newID()
		done := make(chan result, 1)
		go func() { done <- e.do(ctx, c) }()
		ready(c.behavior.CallId)
		cancelled := time.Now()
		cancel()
		res := <-done
		e.inv.check()
		if status.Code(res.err) != codes.Canceled {
			e.inv.fail("%s: ended with %v, want CANCELLED", name, res.err)
		}
		if late := time.Since(cancelled); late > deadlineSlack {
			e.inv.fail("%s: returned %v after the cancellation", name, late)
		}
	}
	inServer := func(n int) func(id string) {
		return func(id string) {
			if err := e.svc.WaitAttempts(t.Context(), id, n); err != nil {
				t.Fatal(err)
			}
		}
	}
	inBackoff := func(string) { <-retrying }

	// Before the call: nothing reaches the server.
	for k := range numKinds {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		res := e.do(ctx, call{kind: k, messages: 2, behavior: &testingv1.Behavior{StreamMessages: 2}})
		e.inv.check()
		if status.Code(res.err) != codes.Canceled || e.svc.Attempts(res.id) != 0 {
			e.inv.fail("%v cancelled before the call: %v after %d attempts, want CANCELLED and none", k, res.err, e.svc.Attempts(res.id))
		}
	}
	unavailableOnce := func() *testingv1.Behavior {
		return &testingv1.Behavior{FailAttempts: 1, FailCode: uint32(codes.Unavailable), StreamMessages: 3}
	}
	for _, k := range []kind{kindUnary, kindServerStream, kindClientStream, kindBidi} {
		cancelWhen(k.String()+" during backoff", call{kind: k, messages: 2, behavior: unavailableOnce()}, inBackoff)
		cancelWhen(k.String()+" during an attempt", call{kind: k, messages: 2, behavior: hang()}, inServer(1))
	}
	cancelWhen("during hedging", call{kind: kindQuery, behavior: hang()}, inServer(3))

	// Streams after commit: the application has a message, then cancels.
	for _, k := range []kind{kindServerStream, kindBidi} {
		ctx, cancel := context.WithCancel(t.Context())
		id := e.newID()
		b := &testingv1.Behavior{CallId: id, StreamMessages: 1 << 20}
		var recv func() error
		var send func() error
		if k == kindServerStream {
			st, err := e.tc.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: b})
			if err != nil {
				t.Fatal(err)
			}
			recv = func() error { _, err := st.Recv(); return err }
		} else {
			st, err := e.tc.BidiStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			send = func() error { return st.Send(&testingv1.BidiStreamRequest{Behavior: b}) }
			recv = func() error { _, err := st.Recv(); return err }
			if err := send(); err != nil {
				t.Fatal(err)
			}
		}
		if err := recv(); err != nil {
			t.Fatalf("%v: first message: %v", k, err)
		}
		cancel()
		var err error
		for err == nil {
			err = recv()
		}
		e.inv.check()
		if status.Code(err) != codes.Canceled {
			e.inv.fail("%v cancelled after commit: %v, want CANCELLED", k, err)
		}
	}

	// In the client bulkhead's queue: one call holds the only slot.
	holdCtx, release := context.WithCancel(t.Context())
	holder := make(chan result, 1)
	holdID := e.newID()
	go func() {
		holder <- e.do(holdCtx, call{kind: kindIdempotent, behavior: &testingv1.Behavior{CallId: holdID, Sleep: durationpb.New(time.Hour)}})
	}()
	if err := e.svc.WaitAttempts(t.Context(), holdID, 1); err != nil {
		t.Fatal(err)
	}
	// The queue has one place. A probe rejected at once with
	// RESOURCE_EXHAUSTED shows that the call under test holds it; when the
	// probe got the place instead, the call under test was rejected, and
	// the probe times out, freeing the place for another round.
	for queued := false; !queued; {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan result, 1)
		go func() { done <- e.do(ctx, call{kind: kindIdempotent}) }()
		probe := e.do(t.Context(), call{kind: kindIdempotent, timeout: 20 * time.Millisecond, opts: []grpc.CallOption{interceptors.DisableRetry()}})
		queued = status.Code(probe.err) == codes.ResourceExhausted
		cancelled := time.Now()
		cancel()
		res := <-done
		if !queued {
			continue
		}
		e.inv.check()
		if status.Code(res.err) != codes.Canceled || time.Since(cancelled) > deadlineSlack {
			e.inv.fail("cancelled in the bulkhead queue: %v after %v, want CANCELLED at once", res.err, time.Since(cancelled))
		}
	}
	release()
	<-holder

	// At random points of random calls (IdempotentUnary, whose bulkhead
	// is full, left out), from 8 callers at a time.
	kinds := []kind{kindUnary, kindQuery, kindServerStream, kindClientStream, kindBidi}
	var wg sync.WaitGroup
	var succeeded, cancelled atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(chaosSeed, 5+uint64(w)))
			for range 25 {
				k := kinds[r.IntN(len(kinds))]
				b := &testingv1.Behavior{StreamMessages: int32(1 + r.IntN(5))}
				if r.IntN(2) == 0 {
					b.Sleep = durationpb.New(time.Duration(r.IntN(20)) * time.Millisecond)
				}
				if r.IntN(4) == 0 {
					b.FailAttempts, b.FailCode = 1, uint32(codes.Unavailable)
				}
				after := time.Duration(r.IntN(40_000)) * time.Microsecond
				ctx, cancel := context.WithCancel(t.Context())
				timer := time.AfterFunc(after, cancel)
				res := e.do(ctx, call{kind: k, behavior: b, messages: 1 + int(b.StreamMessages)%3})
				timer.Stop()
				cancel()
				e.inv.check()
				switch st := status.Convert(res.err); {
				case st.Code() == codes.OK:
					succeeded.Add(1)
				case st.Code() == codes.Canceled:
					cancelled.Add(1)
				case st.Code() == codes.Unavailable && b.FailAttempts > 0 && strings.HasSuffix(st.Message(), "fails as requested"):
					// The attempt had failed when the cancellation came:
					// no retry follows, and the call ends with that
					// attempt's own error, as the retry engine documents
					// for errors once the context is done.
					cancelled.Add(1)
				default:
					e.inv.fail("%v cancelled after %v: %v, want success or CANCELLED", k, after, res.err)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("random cancellations: %d calls succeeded first, %d were cancelled", succeeded.Load(), cancelled.Load())

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.hw.waitIdle(ctx); err != nil {
		t.Errorf("handlers outlived their cancelled callers: %v", err)
	}
	e.verify()
}
