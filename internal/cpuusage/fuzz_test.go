package cpuusage

import (
	"math"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func FuzzParseCgroup(f *testing.F) {
	f.Add([]byte("0::/\n"))
	f.Add([]byte("12:cpu,cpuacct:/job\n3:cpuset:/\n0::/a/b\n"))
	f.Add([]byte("1:cpu:relative\n::\n:::\n2:cpuacct:/x:y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := parseCgroup(data)
		if c.hasV2 && !strings.HasPrefix(c.v2, "/") {
			t.Fatalf("v2 path %q not absolute", c.v2)
		}
		for ctl, p := range c.v1 {
			if (ctl != "cpu" && ctl != "cpuacct") || !strings.HasPrefix(p.path, "/") {
				t.Fatalf("v1 %q -> %+v", ctl, p)
			}
		}
	})
}

func FuzzParseV2Usage(f *testing.F) {
	f.Add([]byte("usage_usec 123\nuser_usec 1\n"))
	f.Add([]byte("usage_usec 18446744073709551615\n"))
	f.Add([]byte("usage_usec -1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ns, ok := parseV2Usage(data)
		if ok && ns%1000 != 0 {
			t.Fatalf("usage %dns is not whole microseconds", ns)
		}
	})
}

func FuzzParseV2Max(f *testing.F) {
	f.Add([]byte("max 100000\n"))
	f.Add([]byte("150000 100000\n"))
	f.Add([]byte("1 18446744073709551615"))
	f.Add([]byte("0 0"))
	f.Add([]byte("50000"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cpus, limited, ok := parseV2Max(data)
		if limited && (!ok || !(cpus > 0) || math.IsInf(cpus, 0)) {
			t.Fatalf("parseV2Max(%q) = %v, %v, %v", data, cpus, limited, ok)
		}
	})
}

func FuzzParseV1Quota(f *testing.F) {
	f.Add([]byte("-1\n"), []byte("100000\n"))
	f.Add([]byte("150000"), []byte("100000"))
	f.Add([]byte("-2"), []byte("0"))
	f.Add([]byte("9223372036854775807"), []byte("1"))
	f.Fuzz(func(t *testing.T, quota, period []byte) {
		cpus, limited, ok := parseV1Quota(quota, period)
		if limited && (!ok || !(cpus > 0) || math.IsInf(cpus, 0)) {
			t.Fatalf("parseV1Quota(%q, %q) = %v, %v, %v", quota, period, cpus, limited, ok)
		}
	})
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("cpu  924519 1795 309474 682319 3762 0 9362 0 0 0\ncpu0 1 2 3 4\n"))
	f.Add([]byte("cpu 1 2 3\n"))
	f.Add([]byte("cpu 18446744073709551615 1 0 0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		busy, total, ok := parseProcStat(data)
		if ok && busy > total {
			t.Fatalf("busy %d above total %d", busy, total)
		}
	})
}

// FuzzUsageBetween checks the arithmetic on any two snapshots: an ok usage
// is in [0, 1] with a positive, finite interval.
func FuzzUsageBetween(f *testing.F) {
	f.Add(uint8(1), int64(0), int64(1e9), uint64(0), uint64(5e8), uint64(0), uint64(0), 2.0)
	f.Add(uint8(3), int64(5), int64(5), uint64(10), uint64(20), uint64(100), uint64(130), 0.0)
	f.Add(uint8(1), int64(math.MinInt64), int64(math.MaxInt64), uint64(0), uint64(math.MaxUint64), uint64(0), uint64(0), 1e-300)
	f.Add(uint8(2), int64(0), int64(1), uint64(0), uint64(1), uint64(0), uint64(0), math.NaN())
	f.Fuzz(func(t *testing.T, src uint8, at1, at2 int64, used1, used2, total1, total2 uint64, capacity float64) {
		a := snapshot{source: Source(src % 4), at: time.Unix(0, at1), used: used1, total: total1, capacity: capacity}
		b := snapshot{source: a.source, at: time.Unix(0, at2), used: used2, total: total2, capacity: capacity}
		u, secs, res := usageBetween(a, b)
		if res == ok && (!(u >= 0 && u <= 1) || !(secs > 0) || math.IsInf(secs, 0)) {
			t.Fatalf("usageBetween(%+v, %+v) = %v over %vs", a, b, u, secs)
		}
	})
}

// FuzzSampler runs a sampler over a sequence of arbitrary file contents and
// clock steps: the usage must always be unknown or in [0, 1].
func FuzzSampler(f *testing.F) {
	f.Add("0::/\n", "usage_usec 5\n", "usage_usec 900\n", "100 100", int64(1e9), 1)
	f.Add("12:cpu,cpuacct:/\n", "x", "cpu 1 2 3 4", "-1", int64(-5), 0)
	f.Add("", "", "cpu 5 0 0 5\n", "", int64(0), -3)
	f.Fuzz(func(t *testing.T, cgroup, stat1, stat2, quota string, step int64, cpus int) {
		fsys := fstest.MapFS{}
		set := func(name, data string) { fsys[name] = &fstest.MapFile{Data: []byte(data)} }
		set("proc/self/cgroup", cgroup)
		set("sys/fs/cgroup/cpu.max", quota)
		set("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", quota)
		set("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000")
		now := time.Unix(1e6, 0)
		s := New(Config{FS: fsys, NumCPU: func() int { return cpus }, Now: func() time.Time { return now }})
		for i, stat := range []string{stat1, stat2, stat1, stat2} {
			set("sys/fs/cgroup/cpu.stat", stat)
			set("sys/fs/cgroup/cpu,cpuacct/cpuacct.usage", stat)
			set("proc/stat", stat)
			now = now.Add(time.Duration(step) * time.Duration(i%3-1))
			s.Sample()
			if u, ok := s.Peek(); (ok && !(u >= 0 && u <= 1)) || (!ok && u != 0) {
				t.Fatalf("usage = %v, %v", u, ok)
			}
		}
	})
}
