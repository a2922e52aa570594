package classify_test

import (
	"math"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestDefaultTable(t *testing.T) {
	tab := classify.Default()
	retryAlways := classify.Pushback{Present: true, Retry: true, Delay: time.Second}
	tests := []struct {
		code codes.Code
		// Retryable for: a plain attempt, an idempotent one, one with
		// pushback, an idempotent one whose per-attempt timeout fired.
		plain, idempotent, pushback, attemptTimeout bool
		breaker                                     classify.BreakerOutcome
	}{
		{codes.OK, false, false, false, false, classify.BreakerSuccess},
		{codes.Canceled, false, false, false, false, classify.BreakerIgnore},
		{codes.Unavailable, true, true, true, true, classify.BreakerFailure},
		{codes.ResourceExhausted, false, false, true, false, classify.BreakerFailure},
		{codes.DeadlineExceeded, false, false, false, true, classify.BreakerFailure},
		{codes.Aborted, false, false, false, false, classify.BreakerIgnore},
		{codes.Unknown, false, false, false, false, classify.BreakerFailure},
		{codes.Internal, false, false, false, false, classify.BreakerFailure},
		{codes.DataLoss, false, false, false, false, classify.BreakerFailure},
		{codes.InvalidArgument, false, false, false, false, classify.BreakerSuccess},
		{codes.NotFound, false, false, false, false, classify.BreakerSuccess},
		{codes.AlreadyExists, false, false, false, false, classify.BreakerSuccess},
		{codes.PermissionDenied, false, false, false, false, classify.BreakerSuccess},
		{codes.Unauthenticated, false, false, false, false, classify.BreakerSuccess},
		{codes.FailedPrecondition, false, false, false, false, classify.BreakerSuccess},
		{codes.OutOfRange, false, false, false, false, classify.BreakerSuccess},
		{codes.Unimplemented, false, false, false, false, classify.BreakerSuccess},
		{codes.Code(99), false, false, false, false, classify.BreakerFailure}, // like UNKNOWN
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			cases := []struct {
				name string
				a    classify.Attempt
				want bool
			}{
				{"plain", classify.Attempt{Code: tt.code}, tt.plain},
				{"idempotent", classify.Attempt{Code: tt.code, Idempotent: true}, tt.idempotent},
				{"pushback", classify.Attempt{Code: tt.code, Pushback: retryAlways}, tt.pushback},
				{"attempt timeout", classify.Attempt{Code: tt.code, Idempotent: true, AttemptTimedOut: true}, tt.attemptTimeout},
			}
			for _, c := range cases {
				if got := tab.Retryable(c.a); got != c.want {
					t.Errorf("%s: Retryable = %v, want %v", c.name, got, c.want)
				}
			}
			if got := tab.Breaker(tt.code); got != tt.breaker {
				t.Errorf("Breaker = %v, want %v", got, tt.breaker)
			}
		})
	}
}

func TestAttemptTimeoutNeedsIdempotence(t *testing.T) {
	a := classify.Attempt{Code: codes.DeadlineExceeded, AttemptTimedOut: true}
	if classify.Default().Retryable(a) {
		t.Error("a non-idempotent method was retried after its attempt timeout")
	}
}

func TestPushbackVetoesEveryRule(t *testing.T) {
	veto := classify.Pushback{Present: true}
	a := classify.Attempt{Code: codes.Unavailable, Idempotent: true, Pushback: veto}
	if classify.Default().Retryable(a) {
		t.Error("UNAVAILABLE was retried although the server said not to")
	}
}

func TestWithChangesOneRowOfACopy(t *testing.T) {
	base := classify.Default()
	tab := base.With(codes.Aborted, classify.Rule{Retry: classify.RetryIfIdempotent, Breaker: classify.BreakerFailure})
	if !tab.Retryable(classify.Attempt{Code: codes.Aborted, Idempotent: true}) {
		t.Error("configured ABORTED not retried for an idempotent method")
	}
	if tab.Retryable(classify.Attempt{Code: codes.Aborted}) {
		t.Error("configured ABORTED retried for a non-idempotent method")
	}
	if base.Retryable(classify.Attempt{Code: codes.Aborted, Idempotent: true}) {
		t.Error("With changed the table it was called on")
	}
	if got := tab.With(codes.Code(40), classify.Rule{Retry: classify.RetryAlways}); got != tab {
		t.Error("With accepted a code outside gRPC's")
	}
}

func TestZeroTableNeverRetries(t *testing.T) {
	var tab classify.Table
	if tab.Retryable(classify.Attempt{Code: codes.Unavailable, Idempotent: true}) || tab.Breaker(codes.Internal) != classify.BreakerSuccess {
		t.Error("zero Table should never retry and count everything as success")
	}
}

func TestNames(t *testing.T) {
	if got := classify.RetryIfAttemptTimeout.String(); got != "if-attempt-timeout" {
		t.Errorf("got %q", got)
	}
	if got := classify.RetryRule(9).String(); got != "RetryRule(9)" {
		t.Errorf("got %q", got)
	}
	if got := classify.BreakerIgnore.String(); got != "ignore" {
		t.Errorf("got %q", got)
	}
	if got := classify.BreakerOutcome(7).String(); got != "BreakerOutcome(7)" {
		t.Errorf("got %q", got)
	}
}

func TestParsePushbackTrailer(t *testing.T) {
	maxDur := time.Duration(math.MaxInt64)
	tests := []struct {
		values []string
		want   classify.Pushback
	}{
		{nil, classify.Pushback{}},
		{[]string{"0"}, classify.Pushback{Present: true, Retry: true}},
		{[]string{"250"}, classify.Pushback{Present: true, Retry: true, Delay: 250 * time.Millisecond}},
		{[]string{" 250 "}, classify.Pushback{Present: true, Retry: true, Delay: 250 * time.Millisecond}},
		{[]string{"-1"}, classify.Pushback{Present: true}},
		{[]string{"+5"}, classify.Pushback{Present: true}},
		{[]string{""}, classify.Pushback{Present: true}},
		{[]string{"1.5"}, classify.Pushback{Present: true}},
		{[]string{"ten"}, classify.Pushback{Present: true}},
		{[]string{"1", "2"}, classify.Pushback{Present: true}},
		{[]string{"9223372036854"}, classify.Pushback{Present: true, Retry: true, Delay: 9223372036854 * time.Millisecond}},
		{[]string{"9223372036855"}, classify.Pushback{Present: true, Retry: true, Delay: maxDur}},
		{[]string{"99999999999999999999999999"}, classify.Pushback{Present: true, Retry: true, Delay: maxDur}},
	}
	for _, tt := range tests {
		if got := classify.ParsePushbackTrailer(tt.values); got != tt.want {
			t.Errorf("ParsePushbackTrailer(%q) = %+v, want %+v", tt.values, got, tt.want)
		}
	}
}

func retryInfoStatus(t testing.TB, value []byte) *status.Status {
	t.Helper()
	return status.FromProto(&spb.Status{
		Code:    int32(codes.ResourceExhausted),
		Details: []*anypb.Any{{TypeUrl: "type.googleapis.com/google.rpc.RetryInfo", Value: value}},
	})
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRetryInfo(t *testing.T) {
	withInfo, err := status.New(codes.ResourceExhausted, "busy").WithDetails(
		&errdetails.ErrorInfo{Reason: "other detail first"},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)},
	)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		st   *status.Status
		want classify.Pushback
	}{
		{"none", status.New(codes.Unavailable, "x"), classify.Pushback{}},
		{"nil status", nil, classify.Pushback{}},
		{"delay", withInfo, classify.Pushback{Present: true, Retry: true, Delay: 1500 * time.Millisecond}},
		{"malformed bytes", retryInfoStatus(t, []byte{0xff, 0xff}), classify.Pushback{Present: true}},
		{"no delay", retryInfoStatus(t, nil), classify.Pushback{Present: true}},
		{"negative", retryInfoStatus(t, marshal(t, &errdetails.RetryInfo{RetryDelay: &durationpb.Duration{Seconds: -1}})), classify.Pushback{Present: true}},
		{"invalid nanos", retryInfoStatus(t, marshal(t, &errdetails.RetryInfo{RetryDelay: &durationpb.Duration{Nanos: 2e9}})), classify.Pushback{Present: true}},
		{"huge", retryInfoStatus(t, marshal(t, &errdetails.RetryInfo{RetryDelay: &durationpb.Duration{Seconds: 315576000000}})), classify.Pushback{Present: true, Retry: true, Delay: time.Duration(math.MaxInt64)}},
	}
	for _, tt := range tests {
		if got := classify.ParseRetryInfo(tt.st); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestPushbackOfPrefersTheTrailer(t *testing.T) {
	st, _ := status.New(codes.ResourceExhausted, "busy").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	got := classify.PushbackOf(st, metadata.Pairs(classify.PushbackTrailer, "20"))
	if got.Delay != 20*time.Millisecond {
		t.Errorf("got %+v, want the trailer's 20ms", got)
	}
	got = classify.PushbackOf(st, nil)
	if got.Delay != time.Second {
		t.Errorf("got %+v, want RetryInfo's 1s without a trailer", got)
	}
	d, retry := got.RetryDelay()
	if d != time.Second || !retry {
		t.Errorf("RetryDelay() = %v, %v", d, retry)
	}
}

func FuzzParsePushbackTrailer(f *testing.F) {
	for _, s := range []string{"0", "100", "-1", "", "abc", "9223372036855", "007", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := classify.ParsePushbackTrailer([]string{s})
		if !p.Present {
			t.Fatalf("a value must always be present: %q", s)
		}
		if p.Delay < 0 || (!p.Retry && p.Delay != 0) {
			t.Fatalf("%q gave %+v", s, p)
		}
	})
}

func FuzzParseRetryInfo(f *testing.F) {
	f.Add(marshal(f, &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)}))
	f.Add(marshal(f, &errdetails.RetryInfo{RetryDelay: &durationpb.Duration{Seconds: -5, Nanos: -3}}))
	f.Add([]byte{0x0a, 0x02, 0x08, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, value []byte) {
		p := classify.ParseRetryInfo(retryInfoStatus(t, value))
		if !p.Present || p.Delay < 0 || (!p.Retry && p.Delay != 0) {
			t.Fatalf("%x gave %+v", value, p)
		}
	})
}

func TestIdempotentFromDescriptor(t *testing.T) {
	tests := map[string]bool{
		testingv1.TestService_Unary_FullMethodName:           false,
		testingv1.TestService_IdempotentUnary_FullMethodName: true,
		testingv1.TestService_Query_FullMethodName:           true,
		testingv1.TestService_ServerStream_FullMethodName:    true,
		testingv1.TestService_BidiStream_FullMethodName:      false,
		"/grpcresilience.testing.v1.TestService/Missing":     false,
		"/no.such.Service/Query":                             false,
		"/grpcresilience.testing.v1.Behavior/Query":          false, // a message, not a service
		"not a method": false,
	}
	for method, want := range tests {
		for range 2 { // the second look-up comes from the cache
			if got := classify.IdempotentByDescriptor(method); got != want {
				t.Errorf("Idempotent(%q) = %v, want %v", method, got, want)
			}
		}
	}
}

func TestSplitMethod(t *testing.T) {
	tests := []struct {
		in, service, method string
		ok                  bool
	}{
		{"/a.B/C", "a.B", "C", true},
		{"/a.B/", "", "", false},
		{"//C", "", "", false},
		{"a.B/C", "", "", false},
		{"/a.B", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		s, m, ok := classify.SplitMethod(tt.in)
		if s != tt.service || m != tt.method || ok != tt.ok {
			t.Errorf("SplitMethod(%q) = %q, %q, %v", tt.in, s, m, ok)
		}
	}
}
