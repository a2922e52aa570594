package redisfleet

import (
	"math"
	"strings"
	"testing"
	"time"
)

// A message of the breaker channel either parses into a state the syncer
// can apply or is rejected; it never panics, and what parses prints back
// to the same message.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		"1 1 open 1733100000123 123-abcdef dep",
		"1 2 closed 0 123-abcdef /pkg.Svc/Method with spaces",
		"1 9007199254740992 open 0 a b",
		"1 9007199254740993 open 0 a b",
		"1 -1 open 0 a b", "1 1 ajar 0 a b", "2 1 open 0 a b", "1 1 open 0  b", "", " ", "1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseMessage(s)
		if err != nil {
			return
		}
		if m.state.epoch > maxEpoch || m.state.untilMS < 0 || m.origin == "" || m.name == "" || strings.Contains(m.origin, " ") {
			t.Fatalf("parseMessage(%q) = %+v", s, m)
		}
		state := "closed"
		if m.state.open {
			state = "open"
		}
		again, err := parseMessage(strings.Join([]string{"1", uitoa(m.state.epoch), state, uitoa(uint64(m.state.untilMS)), m.origin, m.name}, " "))
		if err != nil || again != m {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", s, again, err, m)
		}
	})
}

func uitoa(u uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + u%10)
		if u /= 10; u == 0 {
			return string(b[i:])
		}
	}
}

// The scripts' replies decode into sane values or an error, never a panic;
// the decoded rates never exceed 100%.
func FuzzParseReplies(f *testing.F) {
	f.Add(int64(1733100000123), int64(100), int64(60), int64(5), int64(3), int64(1), int64(1733100001123), int64(1), int64(2999), int64(0), uint8(10))
	f.Add(int64(0), int64(1), int64(5), int64(9), int64(-1), int64(2), int64(-5), int64(3), int64(-1), int64(7), uint8(5))
	f.Fuzz(func(t *testing.T, now, calls, fails, slows, epoch, open, until, leased, left, hostile int64, n uint8) {
		v := []int64{now, calls, fails, slows, epoch, open, until, leased, left, hostile}[:min(int(n), 10)]
		if r, err := parseSyncReply(v); err == nil {
			if r.failures > r.calls || r.slows > r.calls || r.state.epoch > maxEpoch || r.state.untilMS < 0 {
				t.Fatalf("parseSyncReply(%v) = %+v", v, r)
			}
		}
		w := []int64{epoch, open, until, leased, hostile}[:min(int(n), 5)]
		if r, err := parseTransitionReply(w); err == nil && (r.state.epoch > maxEpoch || r.hostile < 0) {
			t.Fatalf("parseTransitionReply(%v) = %+v", w, r)
		}
	})
}

// The rate comparison agrees with exact integer arithmetic for whole
// percentages, is off for a zero, negative or NaN rate, and is monotone in
// the count.
func FuzzExceeds(f *testing.F) {
	f.Add(int64(5), int64(10), 50.0)
	f.Add(int64(1), int64(3), 33.333333333333336)
	f.Add(int64(0), int64(0), 100.0)
	f.Add(int64(1)<<40, int64(1)<<40, 100.0)
	f.Fuzz(func(t *testing.T, n, calls int64, rate float64) {
		got := exceeds(n, calls, rate)
		if !(rate > 0) || calls <= 0 || n < 0 {
			if got {
				t.Fatalf("exceeds(%d, %d, %v) = true, want off", n, calls, rate)
			}
			return
		}
		if calls > maxCount || n > maxCount {
			return
		}
		if r := int64(rate); float64(r) == rate && r <= 100 {
			if want := n*100 >= r*calls; got != want {
				t.Fatalf("exceeds(%d, %d, %v) = %v, want %v", n, calls, rate, got, want)
			}
		}
		if got && !exceeds(n+1, calls, rate) {
			t.Fatalf("exceeds(%d, %d, %v) but not with one more", n, calls, rate)
		}
		if rate <= 100 && n >= calls && !got {
			t.Fatalf("exceeds(%d, %d, %v) = false with every call counted", n, calls, rate)
		}
	})
}

// countDelta always gives what the scripts accept: a decimal count between
// 0 and maxCount.
func FuzzCountDelta(f *testing.F) {
	f.Add(uint64(10), uint64(3))
	f.Add(uint64(3), uint64(10))
	f.Add(^uint64(0), uint64(0))
	f.Fuzz(func(t *testing.T, cur, prev uint64) {
		s := countDelta(cur, prev)
		var v uint64
		for _, c := range []byte(s) {
			if c < '0' || c > '9' {
				t.Fatalf("countDelta(%d, %d) = %q", cur, prev, s)
			}
			v = v*10 + uint64(c-'0')
		}
		if v > maxCount || (cur > prev && cur-prev <= maxCount && v != cur-prev) || (cur <= prev && v != 0) {
			t.Fatalf("countDelta(%d, %d) = %q", cur, prev, s)
		}
	})
}

// The lease deadline never overflows, never lies before the start, and
// uses at most nine tenths of the lease.
func FuzzLeaseDeadline(f *testing.F) {
	f.Add(int64(0), int64(3000))
	f.Add(int64(math.MaxInt64-5), int64(3000))
	f.Add(int64(1)<<40, int64(-1))
	f.Add(int64(5), maxLeaseLeftMS+1)
	f.Fuzz(func(t *testing.T, start, leftMS int64) {
		if start < 0 {
			return // the clock starts at zero
		}
		d := leaseDeadline(time.Duration(start), leftMS)
		if d < time.Duration(start) {
			t.Fatalf("leaseDeadline(%d, %d) = %d, before the start", start, leftMS, d)
		}
		if leftMS >= 0 && leftMS <= maxLeaseLeftMS && start < math.MaxInt64/2 {
			if got, most := d-time.Duration(start), time.Duration(leftMS)*time.Millisecond*9/10; got > most {
				t.Fatalf("leaseDeadline(%d, %d) uses %v of a %dms lease", start, leftMS, got, leftMS)
			}
		}
	})
}

// FuzzClassifyReply checks that any error reply is classified, and that
// the codes saying Redis cannot serve, and only they, make it unavailable.
func FuzzClassifyReply(f *testing.F) {
	f.Add("OOM command not allowed when used memory > 'maxmemory'.")
	f.Add("READONLY You can't write against a read only replica.")
	f.Add("ERR Error running script")
	f.Add("")
	f.Fuzz(func(t *testing.T, msg string) {
		c := classifyReply(msg)
		code, _, _ := strings.Cut(msg, " ")
		if want := unavailableCodes[code]; (c == replyUnavailable) != want || (c != replyUnavailable && c != replyRefused) {
			t.Fatalf("classifyReply(%q) = %d", msg, c)
		}
	})
}
