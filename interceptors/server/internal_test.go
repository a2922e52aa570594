package server

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

func TestSampleLatency(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 20000
	lo, hi, tail := 10*time.Millisecond, 20*time.Millisecond, time.Second
	var tails int
	var sum time.Duration
	for range n {
		d := sampleLatency(lo, hi, 0.05, tail, rng.Float64(), rng.Float64())
		if d == tail {
			tails++
			continue
		}
		if d < lo || d > hi {
			t.Fatalf("sample %v outside [%v, %v]", d, lo, hi)
		}
		sum += d
	}
	if tails < n*3/100 || tails > n*7/100 {
		t.Errorf("%d of %d samples in the tail, want about 5%%", tails, n)
	}
	if mean := sum / time.Duration(n-tails); mean < 14*time.Millisecond || mean > 16*time.Millisecond {
		t.Errorf("uniform mean = %v, want about 15ms", mean)
	}
	if d := sampleLatency(lo, 0, 0, 0, 0.5, 0.5); d != lo {
		t.Errorf("fixed latency = %v, want %v", d, lo)
	}
}

func TestPushbackMillis(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want int64
	}{{-1, 0}, {0, 0}, {1, 1}, {time.Millisecond, 1}, {1500 * time.Microsecond, 2}, {time.Second, 1000}, {math.MaxInt64, math.MaxInt64/int64(time.Millisecond) + 1}} {
		if got := pushbackMillis(tt.d); got != tt.want {
			t.Errorf("pushbackMillis(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}

func TestExemptionsMatch(t *testing.T) {
	e := newExemptions([]string{"/a.S/", "/b.S/M", "c.S", "bad/"})
	for m, want := range map[string]bool{
		"/grpc.health.v1.Health/Check":                                   true,
		"/grpc.health.v1.Health/Watch":                                   true,
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      true,
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": true,
		"/a.S/Anything":                 true,
		"/b.S/M":                        true,
		"/b.S/N":                        false,
		"/c.S/Any":                      true,
		"/c.S/":                         true,
		"/bad//":                        false,
		"/grpc.health.v1.HealthX/Check": false,
		"":                              false,
		"/":                             false,
		"no-slash":                      false,
	} {
		if got := e.match(m); got != want {
			t.Errorf("match(%q) = %v, want %v", m, got, want)
		}
	}
}

func TestTooLate(t *testing.T) {
	for _, tt := range []struct {
		remaining, min time.Duration
		want           bool
	}{{-time.Second, 0, true}, {0, 0, true}, {1, 0, false}, {time.Second, 2 * time.Second, true}, {2 * time.Second, 2 * time.Second, false}} {
		if got := tooLate(tt.remaining, tt.min); got != tt.want {
			t.Errorf("tooLate(%v, %v) = %v, want %v", tt.remaining, tt.min, got, tt.want)
		}
	}
}

// The hot paths of an admitted call allocate nothing: exemption lookup and
// a chaos decision with nothing scheduled.
func TestHotPathsAllocateNothing(t *testing.T) {
	e := newExemptions(nil)
	c := newChaos(ChaosConfig{}, Observer{})
	if n := testing.AllocsPerRun(100, func() {
		_ = e.match("/grpcresilience.testing.v1.TestService/Unary")
		_ = c.decide("/grpcresilience.testing.v1.TestService/Unary")
	}); n != 0 {
		t.Errorf("allocations = %v, want 0", n)
	}
}

func FuzzSampleLatency(f *testing.F) {
	f.Add(int64(10e6), int64(20e6), 0.1, int64(1e9), 0.5, 0.5)
	f.Add(int64(0), int64(math.MaxInt64), 0.0, int64(0), 0.99, 0.9999999999)
	f.Add(int64(5), int64(1), 1.0, int64(7), 0.0, 1.5)
	f.Fuzz(func(t *testing.T, lo, hi int64, tailRate float64, tail int64, uTail, uLat float64) {
		if lo < 0 || hi < 0 || tail < 0 {
			return // validate refuses negative durations
		}
		d := sampleLatency(time.Duration(lo), time.Duration(hi), tailRate, time.Duration(tail), uTail, uLat)
		if uTail < tailRate {
			if d != time.Duration(tail) {
				t.Fatalf("tail sample %v, want %v", d, tail)
			}
			return
		}
		if d < time.Duration(lo) || d > max(time.Duration(lo), time.Duration(hi)) {
			t.Fatalf("sample %v outside [%v, %v]", d, lo, hi)
		}
	})
}

func FuzzPushbackMillis(f *testing.F) {
	for _, d := range []int64{-1, 0, 1, 999999, 1000000, 1000001, math.MaxInt64, math.MinInt64} {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, d int64) {
		ms := pushbackMillis(time.Duration(d))
		if ms < 0 {
			t.Fatalf("pushbackMillis(%d) = %d, negative", d, ms)
		}
		if d > 0 && (ms*1e6 < d && ms < math.MaxInt64/int64(time.Millisecond)) {
			t.Fatalf("pushbackMillis(%d) = %d rounds down", d, ms)
		}
		if d > 0 && ms > d/1e6+1 {
			t.Fatalf("pushbackMillis(%d) = %d rounds up by more than 1ms", d, ms)
		}
	})
}

// Method names come from the network: matching and pattern checks never
// panic, health and reflection are always exempt, a valid pattern matches
// the methods it names, and Config.Validate accepts exactly the valid
// patterns, naming the entry.
func FuzzExemptions(f *testing.F) {
	for _, s := range []string{"/a.S/M", "/a.S/", "a.S", "", "/", "//", "a/b", "/a/b/c", "/grpc.health.v1.Health/Check", "\xff/\x00/"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, pattern, method string) {
		canon, ok := methodPattern(pattern)
		err := Config{Exempt: []string{pattern}}.Validate()
		if ok != (err == nil) {
			t.Fatalf("methodPattern(%q) ok = %v, but Validate: %v", pattern, ok, err)
		}
		if err != nil {
			if fe := resilience.FieldErrors(err); len(fe) != 1 || fe[0].Field != "Exempt[0]" {
				t.Fatalf("Validate: %v, want one FieldError for Exempt[0]", err)
			}
		}
		e := newExemptions([]string{pattern})
		switch {
		case !ok:
		case strings.HasSuffix(canon, "/"):
			if !e.match(canon + "M") {
				t.Fatalf("service pattern %q does not match its method %q", pattern, canon+"M")
			}
		case !e.match(canon):
			t.Fatalf("valid pattern %q does not match itself", pattern)
		}
		_ = e.match(method)
		if !e.match("/grpc.health.v1.Health/Check") {
			t.Fatal("health is not exempt")
		}
	})
}

// Fault configs come from config files: Validate never panics and a
// validated fault compiles to a usable injector.
func FuzzFaultValidate(f *testing.F) {
	f.Add(0.5, uint32(14), int64(1e6), int64(0), int64(0), 0.0, int64(0), 0.0, 0)
	f.Add(math.NaN(), uint32(99), int64(-1), int64(-1), int64(-1), 2.0, int64(-1), -1.0, -1)
	f.Fuzz(func(t *testing.T, rate float64, code uint32, pushback, lat, latMax int64, tailRate float64, tail int64, abortRate float64, abortAfter int) {
		flt := Fault{ErrorRate: rate, Code: codesCode(code), Pushback: time.Duration(pushback), Latency: time.Duration(lat), LatencyMax: time.Duration(latMax),
			TailRate: tailRate, TailLatency: time.Duration(tail), AbortRate: abortRate, AbortAfter: abortAfter}
		cfg := FaultConfig{All: flt}
		if err := cfg.Validate(); err != nil {
			fes := resilience.FieldErrors(err)
			if len(fes) == 0 {
				t.Fatalf("error %v holds no FieldError", err)
			}
			for _, fe := range fes {
				if !strings.HasPrefix(fe.Field, "All.") {
					t.Fatalf("FieldError %v is not under All", fe)
				}
			}
			return
		}
		s := compile(cfg)
		if cf := s.lookup("/a.S/M"); flt.active() && (cf == nil || cf.err == nil) {
			t.Fatal("an active fault compiled to nothing")
		}
	})
}

func codesCode(c uint32) codes.Code { return codes.Code(c) }

func TestLongHeaderKeysShareTheOverflowPartition(t *testing.T) {
	b := newBulkhead(BulkheadConfig{Limit: 1, PartitionBy: PartitionByHeader, Header: "x-caller"}, &hub{}, keyDisplay{raw: true})
	for _, tc := range []struct {
		value, want string
	}{
		{"tenant-a", "tenant-a"},
		{strings.Repeat("k", MaxHeaderKeyLength), strings.Repeat("k", MaxHeaderKeyLength)},
		{strings.Repeat("k", MaxHeaderKeyLength+1), ""},
		{strings.Repeat("k", 1<<20), ""},
	} {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-caller", tc.value))
		if got := b.key(ctx, "/a.B/C"); got != tc.want {
			t.Errorf("key of a %d-byte header = %d bytes, want %d", len(tc.value), len(got), len(tc.want))
		}
	}
}
