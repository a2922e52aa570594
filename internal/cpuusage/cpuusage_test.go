package cpuusage

import (
	"io/fs"
	"math"
	"runtime"
	"strconv"
	"testing"
	"testing/fstest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Unix(1_000_000, 0)

// machine is a fake kernel: a file system the test edits between readings
// and a clock it moves.
type machine struct {
	fs   fstest.MapFS
	now  time.Time
	cpus int
	s    *Sampler
}

func newMachine(files map[string]string, cpus int) *machine {
	m := &machine{fs: fstest.MapFS{}, now: t0, cpus: cpus}
	for name, data := range files {
		m.set(name, data)
	}
	m.s = New(Config{FS: m.fs, NumCPU: func() int { return m.cpus }, Now: func() time.Time { return m.now }})
	return m
}

func (m *machine) set(name, data string) { m.fs[name] = &fstest.MapFile{Data: []byte(data)} }

// step moves the clock by d, sets the files and takes a reading.
func (m *machine) step(d time.Duration, files map[string]string) (float64, bool) {
	m.now = m.now.Add(d)
	for name, data := range files {
		m.set(name, data)
	}
	m.s.Sample()
	return m.s.Peek()
}

func v2stat(usec int) string {
	return "usage_usec " + strconv.Itoa(usec) + "\nuser_usec 1\nsystem_usec 2\n"
}

const v2root = "0::/\n"

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestCgroupV2(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		cpus  int
		// usec of CPU used in one second, and the usage it means
		used int
		want float64
	}{
		{"quota of two CPUs on four", map[string]string{"sys/fs/cgroup/cpu.max": "200000 100000\n"}, 4, 500_000, 0.25},
		{"no quota: the CPUs the process may use", map[string]string{"sys/fs/cgroup/cpu.max": "max 100000\n"}, 4, 1_000_000, 0.25},
		{"root cgroup has no cpu.max", nil, 2, 1_000_000, 0.5},
		{"cpuset of one CPU below a quota of two", map[string]string{"sys/fs/cgroup/cpu.max": "200000 100000"}, 1, 500_000, 0.5},
		{"above capacity counts as full", map[string]string{"sys/fs/cgroup/cpu.max": "100000 100000"}, 4, 3_000_000, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"proc/self/cgroup": v2root, "sys/fs/cgroup/cpu.stat": v2stat(1000)}
			for k, v := range tt.files {
				files[k] = v
			}
			m := newMachine(files, tt.cpus)
			if _, ok := m.step(0, nil); ok {
				t.Fatal("usage known after one reading")
			}
			u, ok := m.step(time.Second, map[string]string{"sys/fs/cgroup/cpu.stat": v2stat(1000 + tt.used)})
			if !ok || !near(u, tt.want) {
				t.Fatalf("usage = %v, %v; want %v", u, ok, tt.want)
			}
			if m.s.Source() != CgroupV2 {
				t.Errorf("source = %v, want cgroup2", m.s.Source())
			}
		})
	}
}

func TestCgroupV2NestedQuota(t *testing.T) {
	m := newMachine(map[string]string{
		"proc/self/cgroup":                  "0::/app/worker\n",
		"sys/fs/cgroup/app/cpu.max":         "50000 100000",
		"sys/fs/cgroup/app/worker/cpu.max":  "max 100000",
		"sys/fs/cgroup/app/worker/cpu.stat": v2stat(0),
	}, 8)
	m.step(0, nil)
	// Half a CPU may be used: a quarter of a CPU-second is half of it.
	if u, ok := m.step(time.Second, map[string]string{"sys/fs/cgroup/app/worker/cpu.stat": v2stat(250_000)}); !ok || !near(u, 0.5) {
		t.Fatalf("usage = %v, %v; want 0.5 of the parent's quota", u, ok)
	}
}

func TestCgroupV2PathNotVisible(t *testing.T) {
	// In a container without its own cgroup namespace, the host's path is
	// not mounted: the mount root is the container's cgroup.
	m := newMachine(map[string]string{
		"proc/self/cgroup":       "0::/system.slice/docker-1.scope\n",
		"sys/fs/cgroup/cpu.stat": v2stat(0),
		"sys/fs/cgroup/cpu.max":  "100000 100000",
	}, 4)
	m.step(0, nil)
	if u, ok := m.step(time.Second, map[string]string{"sys/fs/cgroup/cpu.stat": v2stat(400_000)}); !ok || !near(u, 0.4) {
		t.Fatalf("usage = %v, %v; want 0.4", u, ok)
	}
}

func v1files(usageNs int, quota string) map[string]string {
	return map[string]string{
		"proc/self/cgroup": "12:cpu,cpuacct:/job\n0::/\n",
		"sys/fs/cgroup/cpu,cpuacct/job/cpuacct.usage":     strconv.Itoa(usageNs) + "\n",
		"sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us":  quota + "\n",
		"sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_period_us": "100000\n",
	}
}

func TestCgroupV1(t *testing.T) {
	tests := []struct {
		name  string
		quota string
		cpus  int
		want  float64
	}{
		{"quota of one and a half CPUs", "150000", 4, 0.5},
		{"no quota", "-1", 3, 0.25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMachine(v1files(0, tt.quota), tt.cpus)
			m.step(0, nil)
			u, ok := m.step(time.Second, map[string]string{"sys/fs/cgroup/cpu,cpuacct/job/cpuacct.usage": "750000000"})
			if !ok || !near(u, tt.want) || m.s.Source() != CgroupV1 {
				t.Fatalf("usage = %v, %v from %v; want %v from cgroup1", u, ok, m.s.Source(), tt.want)
			}
		})
	}
}

func TestCgroupV1SeparateMounts(t *testing.T) {
	m := newMachine(map[string]string{
		"proc/self/cgroup":                    "3:cpuacct:/\n2:cpu:/\n",
		"sys/fs/cgroup/cpuacct/cpuacct.usage": "0",
		"sys/fs/cgroup/cpu/cpu.cfs_quota_us":  "200000",
		"sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000",
	}, 8)
	m.step(0, nil)
	if u, ok := m.step(time.Second, map[string]string{"sys/fs/cgroup/cpuacct/cpuacct.usage": "1000000000"}); !ok || !near(u, 0.5) {
		t.Fatalf("usage = %v, %v; want 0.5", u, ok)
	}
}

func procStat(busy, idle int) string {
	return "cpu  " + strconv.Itoa(busy) + " 0 0 " + strconv.Itoa(idle) + " 0 0 0 0 0 0\ncpu0 1 2 3 4\nintr 5\n"
}

func TestProcStat(t *testing.T) {
	m := newMachine(map[string]string{"proc/stat": procStat(100, 100)}, 4)
	m.step(0, nil)
	u, ok := m.step(time.Second, map[string]string{"proc/stat": procStat(130, 170)})
	if !ok || !near(u, 0.3) || m.s.Source() != ProcStat {
		t.Fatalf("usage = %v, %v from %v; want 0.3 from procstat", u, ok, m.s.Source())
	}
}

// TestNoSource is what happens off Linux: no file answers, the usage stays
// unknown.
func TestNoSource(t *testing.T) {
	m := newMachine(nil, 4)
	for range 3 {
		if u, ok := m.step(time.Second, nil); ok || u != 0 {
			t.Fatalf("usage = %v, %v with no source", u, ok)
		}
	}
	if m.s.Source() != None {
		t.Errorf("source = %v, want none", m.s.Source())
	}
}

func TestFallback(t *testing.T) {
	tests := []struct {
		name   string
		broken map[string]string
		want   Source
	}{
		{"garbled cpu.stat", map[string]string{"sys/fs/cgroup/cpu.stat": "usage_usec twelve"}, CgroupV1},
		{"cpu.stat without usage", map[string]string{"sys/fs/cgroup/cpu.stat": "user_usec 5"}, CgroupV1},
		{"garbled cpu.max", map[string]string{"sys/fs/cgroup/cpu.max": "lots 100000"}, CgroupV1},
		{"zero period", map[string]string{"sys/fs/cgroup/cpu.max": "100000 0"}, CgroupV1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := v1files(0, "-1")
			files["proc/self/cgroup"] = "12:cpu,cpuacct:/job\n0::/\n"
			files["sys/fs/cgroup/cpu.stat"] = v2stat(0)
			for k, v := range tt.broken {
				files[k] = v
			}
			m := newMachine(files, 2)
			m.step(0, nil)
			m.step(time.Second, nil)
			if got := m.s.Source(); got != tt.want {
				t.Errorf("source = %v, want %v", got, tt.want)
			}
			if _, ok := m.s.Peek(); !ok {
				t.Error("usage unknown although a source answered twice")
			}
		})
	}
	t.Run("garbled v1 falls to procstat", func(t *testing.T) {
		files := v1files(0, "-1")
		files["sys/fs/cgroup/cpu,cpuacct/job/cpuacct.usage"] = "-5"
		files["proc/stat"] = procStat(1, 1)
		m := newMachine(files, 2)
		m.step(0, nil)
		m.step(time.Second, map[string]string{"proc/stat": procStat(2, 2)})
		if m.s.Source() != ProcStat {
			t.Errorf("source = %v, want procstat", m.s.Source())
		}
	})
	t.Run("garbled v1 quota", func(t *testing.T) {
		m := newMachine(v1files(0, "many"), 2)
		m.step(0, nil)
		if m.s.Source() != None {
			t.Errorf("source = %v, want none (no procstat here)", m.s.Source())
		}
	})
}

// TestSourceChange starts afresh: an interval across two sources means
// nothing.
func TestSourceChange(t *testing.T) {
	files := v1files(0, "-1")
	files["proc/stat"] = procStat(0, 100)
	m := newMachine(files, 1)
	m.step(0, nil)
	if _, ok := m.step(time.Second, map[string]string{"sys/fs/cgroup/cpu,cpuacct/job/cpuacct.usage": "500000000"}); !ok {
		t.Fatal("usage unknown after two cgroup readings")
	}
	delete(m.fs, "sys/fs/cgroup/cpu,cpuacct/job/cpuacct.usage")
	if _, ok := m.step(time.Second, nil); ok {
		t.Fatal("usage known across a change of source")
	}
	if u, ok := m.step(time.Second, map[string]string{"proc/stat": procStat(80, 120)}); !ok || !near(u, 0.8) {
		t.Fatalf("usage = %v, %v after a second procstat reading; want 0.8 (a fresh start)", u, ok)
	}
}

func TestHostileReadings(t *testing.T) {
	const stat = "sys/fs/cgroup/cpu.stat"
	setup := func() *machine {
		m := newMachine(map[string]string{"proc/self/cgroup": v2root, stat: v2stat(1_000_000)}, 1)
		m.step(0, nil)
		if u, ok := m.step(time.Second, map[string]string{stat: v2stat(1_500_000)}); !ok || !near(u, 0.5) {
			t.Fatalf("baseline usage = %v, %v; want 0.5", u, ok)
		}
		return m
	}
	t.Run("counter goes backwards", func(t *testing.T) {
		m := setup()
		if _, ok := m.step(time.Second, map[string]string{stat: v2stat(10)}); ok {
			t.Fatal("usage known over a counter reset")
		}
		if u, ok := m.step(time.Second, map[string]string{stat: v2stat(250_010)}); !ok || !near(u, 0.25) {
			t.Fatalf("usage = %v, %v after the reset; want a fresh 0.25", u, ok)
		}
	})
	t.Run("clock goes backwards", func(t *testing.T) {
		m := setup()
		if _, ok := m.step(-time.Hour, map[string]string{stat: v2stat(1_600_000)}); ok {
			t.Fatal("usage known over a negative interval")
		}
		if u, ok := m.step(time.Second, map[string]string{stat: v2stat(1_700_000)}); !ok || !near(u, 0.1) {
			t.Fatalf("usage = %v, %v; want a fresh 0.1", u, ok)
		}
	})
	t.Run("clock stands still", func(t *testing.T) {
		m := setup()
		if u, ok := m.step(0, map[string]string{stat: v2stat(9_000_000)}); !ok || !near(u, 0.5) {
			t.Fatalf("usage = %v, %v; want 0.5 unchanged over no time", u, ok)
		}
		// The reading at the same instant was not taken as the baseline.
		want := 7.5 / 3600 // 7.5s of CPU since the last baseline, an hour ago
		if u, ok := m.step(time.Hour, map[string]string{stat: v2stat(9_000_000)}); !ok || !near(u, want) {
			t.Fatalf("usage = %v, %v; want %v, measured from the last baseline", u, ok, want)
		}
	})
	t.Run("clock jumps ahead", func(t *testing.T) {
		m := setup()
		u, ok := m.step(100*time.Hour, map[string]string{stat: v2stat(1_500_000)})
		if !ok || u != 0 {
			t.Fatalf("usage = %v, %v; want 0: idle for 100 hours, and old readings weigh nothing", u, ok)
		}
	})
	t.Run("file vanishes", func(t *testing.T) {
		m := setup()
		delete(m.fs, stat)
		if _, ok := m.step(time.Second, nil); ok {
			t.Fatal("usage known without a source")
		}
	})
}

// TestSmoothing checks the moving average: after a fresh start the first
// interval is taken as it is, then each reading weighs 1-exp(-dt/1s).
func TestSmoothing(t *testing.T) {
	const stat = "sys/fs/cgroup/cpu.stat"
	m := newMachine(map[string]string{"proc/self/cgroup": v2root, stat: v2stat(0)}, 1)
	m.step(0, nil)
	dt := 250 * time.Millisecond
	if u, _ := m.step(dt, map[string]string{stat: v2stat(250_000)}); !near(u, 1) {
		t.Fatalf("first usage = %v, want 1", u)
	}
	want := 1.0
	for i := range 8 {
		u, _ := m.step(dt, map[string]string{stat: v2stat(250_000)}) // idle
		want *= math.Exp(-0.25)
		if !near(u, want) {
			t.Fatalf("usage after %d idle readings = %v, want %v", i+1, u, want)
		}
	}
}

// manual makes s tick only when the test sends on the returned channel,
// and report each of the loop's readings on the other.
func manual(s *Sampler) (ticks chan time.Time, sampled chan struct{}) {
	ticks, sampled = make(chan time.Time), make(chan struct{}, 100)
	s.ticker = func(time.Duration) (<-chan time.Time, func()) { return ticks, func() {} }
	s.sampled = func() { sampled <- struct{}{} }
	return ticks, sampled
}

// await waits, for at most a generous bound, for a value on c.
func await[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func v2machine() *machine {
	return newMachine(map[string]string{"proc/self/cgroup": v2root, "sys/fs/cgroup/cpu.stat": v2stat(0)}, 2)
}

func TestRunAndStop(t *testing.T) {
	m := v2machine()
	ticks, sampled := manual(m.s)
	m.s.Usage()
	if !m.s.Running() {
		t.Fatal("Usage did not start the sampler")
	}
	await(t, sampled, "the first reading")
	m.now = m.now.Add(time.Second) // ordered by the channels with the loop's reads
	ticks <- t0
	await(t, sampled, "the second reading")
	if u, ok := m.s.Peek(); !ok || u != 0 {
		t.Fatalf("usage %v, %v after two readings of an idle cgroup", u, ok)
	}
	m.s.Stop()
	m.s.Stop() // a second Stop is harmless
	if m.s.Running() {
		t.Fatal("running after Stop")
	}
	m.s.Start()
	m.s.Start()
	await(t, sampled, "the reading of the restart")
	m.s.Stop()
}

// TestRealSystem samples the machine the test runs on, where it can.
func TestRealSystem(t *testing.T) {
	s := New(Config{})
	_, sampled := manual(s)
	s.Start()
	await(t, sampled, "the first reading")
	s.Stop()
	if s.Source() == None {
		t.Skip("no CPU source here: nothing to measure")
	}
	for range 100 {
		s.Sample()
	}
	if u, ok := s.Peek(); ok && (u < 0 || u > 1) {
		t.Fatalf("usage %v outside [0, 1]", u)
	}
}

func TestIdleStop(t *testing.T) {
	m := v2machine()
	s := New(Config{FS: m.fs, NumCPU: func() int { return 1 }, Interval: time.Millisecond, IdleStop: 3 * time.Millisecond})
	ticks, sampled := manual(s)
	s.Usage()
	await(t, sampled, "the first reading")
	s.runMu.Lock()
	done := s.done
	s.runMu.Unlock()
	ticks <- t0 // the read since the start
	await(t, sampled, "a reading")
	for range 3 { // three ticks without a read
		ticks <- t0
		await(t, sampled, "a reading")
	}
	await(t, done, "the loop to exit")
	if s.Running() {
		t.Fatal("the sampler did not stop itself while nobody read it")
	}
	if _, ok := s.Peek(); ok {
		t.Fatal("a stopped sampler's stale usage is still known")
	}
	s.Usage()
	if !s.Running() {
		t.Fatal("Usage did not restart an idle sampler")
	}
	s.Stop()
}

// TestUsageNeverReads: Usage of a stopped sampler starts the goroutine
// and returns without waiting for its reading.
func TestUsageNeverReads(t *testing.T) {
	m := v2machine()
	release := make(chan struct{})
	fsys := blockingFS{FS: m.fs, release: release}
	s := New(Config{FS: fsys, NumCPU: func() int { return 1 }})
	returned := make(chan bool)
	go func() {
		_, ok := s.Usage() // the reading blocks in the file system
		returned <- ok
	}()
	if ok := await(t, returned, "Usage to return while the reading blocks"); ok {
		t.Fatal("usage known before any reading")
	}
	close(release)
	s.Stop()
}

// blockingFS blocks every Open until release is closed.
type blockingFS struct {
	fs.FS
	release chan struct{}
}

func (b blockingFS) Open(name string) (fs.File, error) {
	<-b.release
	return b.FS.Open(name)
}

// TestAbsentSourceStopsForGood is what happens off Linux: the first
// reading finds no file, the goroutine exits and is never started again.
func TestAbsentSourceStopsForGood(t *testing.T) {
	m := newMachine(nil, 1)
	_, sampled := manual(m.s)
	m.s.Usage()
	await(t, sampled, "the first reading")
	m.s.Stop() // waits for the goroutine, which exits by itself
	for range 3 {
		if _, ok := m.s.Usage(); ok {
			t.Fatal("usage known without a source")
		}
		if m.s.Running() {
			t.Fatal("the sampler started again without a source")
		}
	}
	if len(sampled) != 0 {
		t.Fatalf("%d more readings without a source", len(sampled))
	}
}

// TestAcquireRelease: the last Release stops the goroutine at once.
func TestAcquireRelease(t *testing.T) {
	m := v2machine()
	_, sampled := manual(m.s)
	m.s.Release() // without an Acquire: nothing
	m.s.Acquire()
	m.s.Acquire()
	await(t, sampled, "the first reading")
	m.s.Release()
	if !m.s.Running() {
		t.Fatal("stopped while a user remains")
	}
	m.s.Release()
	if m.s.Running() {
		t.Fatal("running after the last Release")
	}
	m.s.Acquire()
	if !m.s.Running() {
		t.Fatal("Acquire did not start the sampler again")
	}
	m.s.Release()
}

// TestAllowedCPUs: with nothing changed since the process started, the
// affinity mask holds the CPUs runtime.NumCPU counted then.
func TestAllowedCPUs(t *testing.T) {
	if n := allowedCPUs(); n != runtime.NumCPU() {
		t.Fatalf("allowedCPUs() = %d, runtime.NumCPU() = %d", n, runtime.NumCPU())
	}
}

func TestShared(t *testing.T) {
	first, second := Shared(), Shared()
	if first != second {
		t.Fatal("Shared returned two samplers")
	}
	if Shared().Running() {
		t.Fatal("the shared sampler runs before anybody asked")
	}
}

func TestSourceString(t *testing.T) {
	for s, want := range map[Source]string{None: "none", CgroupV2: "cgroup2", CgroupV1: "cgroup1", ProcStat: "procstat", 9: "none"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}

// BenchmarkUsage is the cost a strategy pays per reading of a running
// sampler.
func BenchmarkUsage(b *testing.B) {
	s := v2machine().s
	s.Start()
	defer s.Stop()
	b.ReportAllocs()
	for b.Loop() {
		s.Usage()
	}
}

// BenchmarkSample is the cost of one reading of the real system, paid by
// the sampling goroutine every Interval.
func BenchmarkSample(b *testing.B) {
	s := New(Config{})
	b.ReportAllocs()
	for b.Loop() {
		s.Sample()
	}
}
