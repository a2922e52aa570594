package classify

import (
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// PushbackTrailer is the trailer in which a server tells a client how long
// to wait before the next attempt, in milliseconds (gRFC A6).
const PushbackTrailer = "grpc-retry-pushback-ms"

// retryInfoType is the type URL suffix of google.rpc.RetryInfo details.
const retryInfoType = "google.rpc.RetryInfo"

// maxMillis is the largest millisecond count a time.Duration holds.
const maxMillis = math.MaxInt64 / int64(time.Millisecond)

// Pushback is what a server said about retrying an attempt.
//
// The zero value means the server said nothing.
type Pushback struct {
	// Present reports whether the server said anything about retrying.
	Present bool
	// Retry reports whether the server allows a retry. A present but
	// negative or malformed value means it does not.
	Retry bool
	// Delay is how long to wait before the next attempt when Retry is set.
	Delay time.Duration
}

// RetryDelay implements the retry engine's Pushback interface.
func (p Pushback) RetryDelay() (time.Duration, bool) { return p.Delay, p.Retry }

// ParsePushbackTrailer reads the values of the grpc-retry-pushback-ms
// trailer. No value means no pushback. One value that is a non-negative
// decimal integer sets the delay in milliseconds (values beyond what a
// time.Duration holds are capped at its maximum). Anything else, a negative
// or malformed number or more than one value, means "do not retry", as
// gRFC A6 says.
func ParsePushbackTrailer(values []string) Pushback {
	if len(values) == 0 {
		return Pushback{}
	}
	if len(values) > 1 {
		return Pushback{Present: true}
	}
	v := strings.TrimSpace(values[0])
	if v == "" || v[0] == '-' || v[0] == '+' {
		return Pushback{Present: true}
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return Pushback{Present: true}
		}
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms > maxMillis {
		// Only digits, so the error is a range error: the server asked for
		// longer than any duration.
		return Pushback{Present: true, Retry: true, Delay: time.Duration(math.MaxInt64)}
	}
	return Pushback{Present: true, Retry: true, Delay: time.Duration(ms) * time.Millisecond}
}

// ParseRetryInfo reads a google.rpc.RetryInfo detail from st. No such
// detail means no pushback. A detail with a valid, non-negative retry_delay
// sets the delay (capped at the maximum time.Duration); a detail that does
// not decode, or whose delay is missing, invalid or negative, means "do not
// retry". When st carries several, the first one counts.
func ParseRetryInfo(st *status.Status) Pushback {
	for _, d := range st.Proto().GetDetails() {
		name := d.GetTypeUrl()
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			name = name[i+1:]
		}
		if name != retryInfoType {
			continue
		}
		var ri errdetails.RetryInfo
		if err := proto.Unmarshal(d.GetValue(), &ri); err != nil {
			return Pushback{Present: true}
		}
		delay := ri.GetRetryDelay()
		if delay == nil || delay.CheckValid() != nil || delay.GetSeconds() < 0 || delay.GetNanos() < 0 {
			return Pushback{Present: true}
		}
		// AsDuration saturates instead of overflowing.
		return Pushback{Present: true, Retry: true, Delay: delay.AsDuration()}
	}
	return Pushback{}
}

// PushbackOf returns what the server said about retrying in an attempt's
// status and trailer. The trailer, gRPC's own mechanism, wins over a
// RetryInfo detail when both are present.
func PushbackOf(st *status.Status, trailer metadata.MD) Pushback {
	if p := ParsePushbackTrailer(trailer.Get(PushbackTrailer)); p.Present {
		return p
	}
	return ParseRetryInfo(st)
}
