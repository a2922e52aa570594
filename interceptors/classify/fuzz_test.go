package classify_test

import (
	"strings"
	"testing"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
)

// FuzzSplitMethod checks the parser of full method names: it never panics,
// and what it accepts puts back together into its input, with a service
// and a method that are not empty and a method without a slash.
func FuzzSplitMethod(f *testing.F) {
	for _, s := range []string{"/pkg.Svc/Get", "pkg.Svc/Get", "/", "//", "/a/", "/a/b/c", "", "/\xff/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, full string) {
		service, method, ok := classify.SplitMethod(full)
		if !ok {
			if service != "" || method != "" {
				t.Fatalf("SplitMethod(%q) rejected it but returned %q, %q", full, service, method)
			}
			return
		}
		if service == "" || method == "" || strings.Contains(method, "/") {
			t.Fatalf("SplitMethod(%q) = %q, %q", full, service, method)
		}
		if got := "/" + service + "/" + method; got != full {
			t.Fatalf("SplitMethod(%q) = %q, %q, which makes %q", full, service, method, got)
		}
		_ = classify.IdempotentByDescriptor(full) // must not panic on any name
	})
}

// FuzzPushbackOf checks what a client reads from an attempt's status and
// trailer, both from the network: any status proto bytes and any trailer
// values. It never panics; a verdict to retry has a delay that is not
// negative; the trailer wins when it says anything; and the default table
// never retries what the server vetoed.
func FuzzPushbackOf(f *testing.F) {
	f.Add([]byte{}, "5", false)
	f.Add([]byte{0x08, 0x0e, 0x1a, 0x02, 0x0a, 0x00}, "", false)
	f.Add([]byte{0x08, 0x08, 0x1a, 0x04, 0x0a, 0x02, 0xff, 0xff}, "-1", true)
	f.Fuzz(func(t *testing.T, statusBytes []byte, trailer string, twice bool) {
		var sp spb.Status
		if err := proto.Unmarshal(statusBytes, &sp); err != nil {
			return
		}
		st := status.FromProto(&sp)
		md := metadata.MD{}
		if trailer != "" {
			md.Append(classify.PushbackTrailer, trailer)
			if twice {
				md.Append(classify.PushbackTrailer, trailer)
			}
		}
		p := classify.PushbackOf(st, md)
		if p.Retry && (!p.Present || p.Delay < 0) {
			t.Fatalf("PushbackOf = %+v: a retry verdict must be present with a delay of at least 0", p)
		}
		if tp := classify.ParsePushbackTrailer(md.Get(classify.PushbackTrailer)); tp.Present && tp != p {
			t.Fatalf("PushbackOf = %+v, but the trailer says %+v and must win", p, tp)
		}
		code := codes.Code(sp.GetCode())
		a := classify.Attempt{Code: code, Idempotent: true, Pushback: p, AttemptTimedOut: true}
		if p.Present && !p.Retry && classify.Default().Retryable(a) {
			t.Fatalf("the default table retries %v although the server vetoed it (%+v)", code, p)
		}
		_ = classify.Default().Breaker(code) // any code, even beyond gRPC's
	})
}
