package redisfleet

import (
	"math"
	"strconv"
	"testing"
	"time"
)

func FuzzParseTakeReply(f *testing.F) {
	f.Add(3, int64(1), int64(0), int64(0), 1)
	f.Add(3, int64(0), int64(-1), int64(1), 5)
	f.Add(3, int64(0), int64(math.MaxInt64), int64(0), 1)
	f.Add(2, int64(0), int64(0), int64(0), 1)
	f.Fuzz(func(t *testing.T, length int, a, b, c int64, n int) {
		if length < 0 || length > 8 || n < 1 {
			return
		}
		v := []int64{a, b, c, a, b, c, a, b}[:length]
		r, err := parseTakeReply(v, n)
		if err != nil {
			return
		}
		if r.granted < 0 || r.granted > n || r.retryAfter < 0 {
			t.Fatalf("%v (n=%d) -> %+v", v, n, r)
		}
		if r.granted > 0 && r.retryAfter != 0 {
			t.Fatalf("%v -> granted with a RetryAfter", v)
		}
	})
}

func FuzzParsePresenceReply(f *testing.F) {
	f.Add(2, int64(3), int64(0))
	f.Add(2, int64(-1), int64(2))
	f.Fuzz(func(t *testing.T, length int, a, b int64) {
		if length < 0 || length > 4 {
			return
		}
		v := []int64{a, b, a, b}[:length]
		live, _, err := parsePresenceReply(v)
		if err == nil && live < 0 {
			t.Fatalf("%v -> %d live", v, live)
		}
	})
}

func FuzzScriptParams(f *testing.F) {
	f.Add(100.0, 10)
	f.Add(1e-12, 0)
	f.Add(math.Inf(1), -1)
	f.Add(1e9, math.MaxInt)
	f.Add(math.NaN(), 5)
	f.Fuzz(func(t *testing.T, rate float64, burst int) {
		p := newScriptParams(rate, burst)
		if p.unlimited {
			if rate > 0 && !math.IsInf(rate, 1) {
				t.Fatalf("rate %v is unlimited", rate)
			}
			return
		}
		iv, err1 := strconv.ParseFloat(p.interval, 64)
		lim, err2 := strconv.ParseFloat(p.limit, 64)
		if err1 != nil || err2 != nil || !(iv > 0) || !(lim >= iv) || p.burst < 1 {
			t.Fatalf("rate %v burst %d -> %+v", rate, burst, p)
		}
		// The script's numbers stay exact: now (about 2^51 µs) plus the
		// limit stays below 2^53.
		if lim > 2*maxIntervalMicros {
			t.Fatalf("limit %v µs beyond a year", lim)
		}
	})
}

func FuzzLeaseSize(f *testing.F) {
	f.Add(100.0, int64(50*time.Millisecond), 1000, 50)
	f.Add(math.Inf(1), int64(time.Hour), 10, 1<<40)
	f.Add(math.NaN(), int64(1), 0, 0)
	f.Fuzz(func(t *testing.T, rate float64, window int64, maxLease, burst int) {
		n := leaseSize(rate, time.Duration(window), maxLease, burst)
		if n < 0 || n > max(min(maxLease, burst), 0) {
			t.Fatalf("leaseSize(%v, %v, %d, %d) = %d", rate, time.Duration(window), maxLease, burst, n)
		}
	})
}

func FuzzShareOf(f *testing.F) {
	f.Add(300.0, 30, 3)
	f.Add(1e9, math.MaxInt, 1)
	f.Add(-1.0, -5, -2)
	f.Fuzz(func(t *testing.T, rate float64, burst, div int) {
		r, b := shareOf(rate, burst, div)
		if !(rate > 0) {
			if r != 0 {
				t.Fatalf("shareOf(%v) = %v", rate, r)
			}
			return
		}
		if !(r > 0) || r > rate || b < 1 {
			t.Fatalf("shareOf(%v, %d, %d) = %v, %d", rate, burst, div, r, b)
		}
	})
}

func FuzzQuotaKeyBase(f *testing.F) {
	f.Add("a:b", "c", "a", "b:c")
	f.Fuzz(func(t *testing.T, q1, k1, q2, k2 string) {
		if (q1 != q2 || k1 != k2) && quotaKeyBase("p:", q1)+k1 == quotaKeyBase("p:", q2)+k2 {
			t.Fatalf("(%q,%q) and (%q,%q) share a key", q1, k1, q2, k2)
		}
	})
}

// FuzzLocalShare checks the arithmetic of a key's local share: a charge
// never moves the TAT back nor more than the limit ahead of now; a grant
// keeps the TAT within the limit; a refusal changes nothing and asks for a
// wait of at most the limit.
func FuzzLocalShare(f *testing.F) {
	f.Add(int64(0), int64(0), 1, 100.0, 10)
	f.Add(int64(5e9), int64(1e9), 3, 1e-300, 1)
	f.Add(int64(1<<60), int64(1<<60), 1000, 1e9, 1<<30)
	f.Add(int64(0), int64(1e12), -5, 0.5, 0)
	f.Fuzz(func(t *testing.T, tat, now int64, n int, rate float64, burst int) {
		const year = int64(365 * 24 * time.Hour)
		if now < 0 || now > 1<<60 || tat < 0 || tat > now+2*year || !(rate > 0) || math.IsInf(rate, 0) || n > 1<<30 || burst > 1<<30 {
			return // beyond what a Limiter's clock and shareOf produce
		}
		interval, limit := shareInterval(rate, burst)
		if !(interval >= 1) || interval > float64(year) || !(limit >= interval || limit == float64(year)) || limit > float64(year) {
			t.Fatalf("shareInterval(%v, %d) = %v, %v", rate, burst, interval, limit)
		}
		c := shareCharge(tat, now, n, rate, burst)
		if c < max(tat, now) || (float64(c-now) > limit*(1+1e-9)+1 && c > tat) {
			t.Fatalf("shareCharge(%d, %d, %d, %v, %d) = %d", tat, now, n, rate, burst, c)
		}
		next, ok, retry := shareTake(tat, now, n, rate, burst)
		switch {
		case ok && (next < max(tat, now) || float64(next-now) > limit*(1+1e-9)+1):
			t.Fatalf("shareTake(%d, %d, %d, %v, %d) granted, TAT %d", tat, now, n, rate, burst, next)
		case !ok && (next != tat || retry < 0 || float64(retry) > (limit+float64(max(tat-now, 0)))*(1+1e-9)+1):
			t.Fatalf("shareTake(%d, %d, %d, %v, %d) refused: TAT %d, retry %v", tat, now, n, rate, burst, next, retry)
		}
	})
}

// FuzzKeyDigest checks that every caller key maps to a 22-byte base64url
// digest, the same each time.
func FuzzKeyDigest(f *testing.F) {
	f.Add("")
	f.Add("sk-live-0123456789")
	f.Fuzz(func(t *testing.T, key string) {
		d := keyDigest(key)
		if len(d) != 22 || d != keyDigest(key) {
			t.Fatalf("keyDigest(%q) = %q", key, d)
		}
		for _, c := range d {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				t.Fatalf("keyDigest(%q) = %q: not base64url", key, d)
			}
		}
	})
}
