package console

import (
	"math"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzClip(f *testing.F) {
	f.Add("")
	f.Add(strings.Repeat("é", 150))
	f.Add(strings.Repeat("a", 199) + "日本")
	f.Add("<script>alert(1)</script>")
	f.Fuzz(func(t *testing.T, s string) {
		got := clip(s)
		if len(s) <= MaxNameLen {
			if got != s {
				t.Fatalf("clip changed a short name: %q -> %q", s, got)
			}
			return
		}
		if len(got) > MaxNameLen || !strings.HasSuffix(got, ellipsis) {
			t.Fatalf("clip(%d bytes) = %d bytes %q", len(s), len(got), got)
		}
		kept := strings.TrimSuffix(got, ellipsis)
		if !strings.HasPrefix(s, kept) {
			t.Fatalf("clip is not a prefix")
		}
		// The cut is at a character boundary: valid input stays valid.
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("clip cut a character: %q", got)
		}
	})
}

func FuzzRate(f *testing.F) {
	f.Add(uint64(0), uint64(10), int64(time.Second))
	f.Add(uint64(10), uint64(0), int64(time.Second))
	f.Add(uint64(0), uint64(math.MaxUint64), int64(1))
	f.Add(uint64(5), uint64(7), int64(0))
	f.Add(uint64(5), uint64(7), int64(-1))
	f.Fuzz(func(t *testing.T, prev, cur uint64, elapsed int64) {
		r := rate(prev, cur, time.Duration(elapsed))
		if math.IsNaN(r) || math.IsInf(r, 0) || r < 0 {
			t.Fatalf("rate(%d, %d, %d) = %v", prev, cur, elapsed, r)
		}
		if cur < prev || elapsed <= 0 {
			if r != 0 {
				t.Fatalf("rate(%d, %d, %d) = %v, want 0", prev, cur, elapsed, r)
			}
		}
		if f := finite(r); f != r {
			t.Fatalf("finite(%v) = %v", r, f)
		}
	})
}

func FuzzHostAllowed(f *testing.F) {
	f.Add("127.0.0.1:8089")
	f.Add("[::1]:1")
	f.Add("localhost")
	f.Add("attacker.example:80")
	f.Add("[fe80::1%eth0]:80")
	f.Add("admin.internal")
	f.Add(":::")
	c := &Console{cfg: Config{AllowedHosts: []string{"admin.internal"}}}
	f.Fuzz(func(t *testing.T, host string) {
		if !c.hostAllowed(host) {
			return
		}
		// An allowed host is an IP address, localhost or the allowed
		// name, with or without a port.
		h := host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			h = hh
		}
		h = strings.TrimSuffix(h, ".")
		if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
			return
		}
		if h == "" || strings.EqualFold(h, "localhost") || strings.EqualFold(h, "admin.internal") {
			return
		}
		t.Fatalf("hostAllowed(%q) = true", host)
	})
}
