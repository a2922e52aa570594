// Package cpuusage measures how busy the CPUs are that this process may
// use, as a smoothed fraction in [0, 1].
//
// A [Sampler] reads the kernel's counters every Interval (250ms by
// default), from the first source that answers:
//
//  1. cgroup v2: usage_usec of the process's cgroup's cpu.stat, over the
//     CPU time its cpu.max quota allows (the smallest quota of the cgroup
//     and its ancestors);
//  2. cgroup v1: cpuacct.usage over cpu.cfs_quota_us / cpu.cfs_period_us
//     (again the smallest along the path);
//  3. /proc/stat: busy over total time of every CPU of the host.
//
// The cgroup sources count the cgroup's CPU time, so in a container they
// measure the container. Their capacity is the quota, or the number of
// CPUs the process may run on, whichever is smaller. That number is read
// with every reading, from the sampling thread's CPU affinity mask, which
// the kernel keeps in step with the cgroup's cpuset, so that a cpuset or
// affinity changed while the process runs counts; off Linux, and where
// the mask cannot be read, it is [runtime.NumCPU], fixed when the process
// started.
//
// Readings are smoothed by an exponential moving average with a time
// constant of one second: a reading's weight falls to 1/e after one second
// (it halves about every 0.7s), so a burst shorter than a few readings
// barely moves the average and a lasting change shows within a second or
// two. The weight follows the time actually elapsed, so late ticks count
// as they should.
//
// Hostile readings never yield a wrong number. A missing or unparsable
// file sends the sampler to the next source, and a change of source starts
// afresh. A counter that goes backwards, or a clock that does, discards
// the interval and starts afresh from the new reading. An interval in
// which no time passed is skipped. While no usable interval has been
// measured since the last fresh start (on a system without these files,
// such as anything but Linux, always) the usage is unknown, and users of
// the package must then treat the CPU as giving no signal. A sampler whose
// first reading finds none of the files never tries again: its goroutine
// exits, and Usage and Start do not start it.
//
// The sampling goroutine takes every reading; a caller of Usage never
// reads a file.
package cpuusage

import (
	"io/fs"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Source names where a reading came from.
type Source uint8

const (
	// None means no source answered: the usage is unknown.
	None Source = iota
	// CgroupV2 is the cgroup v2 cpu controller.
	CgroupV2
	// CgroupV1 is the cgroup v1 cpuacct and cpu controllers.
	CgroupV1
	// ProcStat is the host-wide /proc/stat.
	ProcStat
)

// String returns "none", "cgroup2", "cgroup1" or "procstat".
func (s Source) String() string {
	switch s {
	case CgroupV2:
		return "cgroup2"
	case CgroupV1:
		return "cgroup1"
	case ProcStat:
		return "procstat"
	}
	return "none"
}

// Defaults of [Config].
const (
	DefaultInterval     = 250 * time.Millisecond
	DefaultTimeConstant = time.Second
	// DefaultIdleStop is how long a running sampler goes on without
	// anybody calling [Sampler.Usage] before it stops itself.
	DefaultIdleStop = 10 * time.Second
)

// Config configures a [Sampler]. The zero value samples the real system.
type Config struct {
	// FS is the file system the kernel files are read from, rooted where
	// "/" is: paths are "proc/self/cgroup", "sys/fs/cgroup/...". nil means
	// os.DirFS("/").
	FS fs.FS
	// NumCPU returns how many CPUs the process may run on. nil means the
	// CPUs of the sampling thread's affinity mask, read with every
	// reading, or runtime.NumCPU where it cannot be read.
	NumCPU func() int
	// Now is the clock that times the intervals. nil means time.Now.
	Now func() time.Time
	// Interval is the time between readings. Zero or less means
	// DefaultInterval.
	Interval time.Duration
	// TimeConstant is the time constant of the moving average. Zero or
	// less means DefaultTimeConstant.
	TimeConstant time.Duration
	// IdleStop is how long the sampling goroutine runs without a call to
	// Usage before it exits (the next call to Usage starts it again). Zero
	// or less means DefaultIdleStop.
	IdleStop time.Duration
}

// Sampler keeps a smoothed CPU usage up to date. Its sampling goroutine
// starts on the first call to [Sampler.Usage] (or [Sampler.Start], or
// [Sampler.Acquire]), stops itself after IdleStop without a call to Usage,
// and stops at once on [Sampler.Stop] or when the last user that called
// Acquire calls [Sampler.Release]. A Sampler is safe for concurrent use;
// create it with [New].
type Sampler struct {
	fsys         fs.FS
	numCPU       func() int // nil: allowedCPUs
	now          func() time.Time
	interval     time.Duration
	timeConstant float64 // seconds
	idleTicks    int

	// value holds the smoothed usage as float64 bits, or unknownBits.
	value  atomic.Uint64
	source atomic.Uint32
	read   atomic.Bool // Usage was called since the loop last looked
	active atomic.Bool // the loop runs
	absent atomic.Bool // the loop's first reading found no source: never start again
	seen   bool        // a source answered once; guarded by mu

	mu    sync.Mutex // guards the sampling state below
	prev  snapshot
	known bool
	avg   float64

	runMu sync.Mutex // guards stop, done and users
	stop  chan struct{}
	done  chan struct{}
	users int // Acquire calls not yet released

	// ticker makes the loop's ticker, and sampled, when not nil, is
	// called after each of the loop's readings. Tests replace them.
	ticker  func(time.Duration) (<-chan time.Time, func())
	sampled func()
}

// unknownBits marks an unknown usage: a NaN no computation here yields.
const unknownBits = 0x7ff8_dead_0000_0001

// New returns a Sampler configured by cfg, not yet started.
func New(cfg Config) *Sampler {
	s := &Sampler{fsys: cfg.FS, numCPU: cfg.NumCPU, now: cfg.Now, interval: cfg.Interval}
	if s.fsys == nil {
		s.fsys = os.DirFS("/")
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.interval <= 0 {
		s.interval = DefaultInterval
	}
	tc := cfg.TimeConstant
	if tc <= 0 {
		tc = DefaultTimeConstant
	}
	s.timeConstant = tc.Seconds()
	idle := cfg.IdleStop
	if idle <= 0 {
		idle = DefaultIdleStop
	}
	s.idleTicks = max(int(idle/s.interval), 1)
	s.value.Store(unknownBits)
	s.ticker = func(d time.Duration) (<-chan time.Time, func()) {
		t := time.NewTicker(d)
		return t.C, t.Stop
	}
	return s
}

var shared = sync.OnceValue(func() *Sampler { return New(Config{}) })

// Shared returns the process's one Sampler of the real system, created on
// first use and started by its first Usage or Acquire call.
func Shared() *Sampler { return shared() }

// Usage returns the smoothed CPU usage in [0, 1] and true, or 0 and false
// while it is unknown. It starts the sampling goroutine if it is not
// running, without waiting for it: the usage of a sampler that was not
// running stays unknown until the goroutine has two readings. It never
// reads a file, never waits for a reading and does not allocate (but
// for starting the goroutine).
func (s *Sampler) Usage() (float64, bool) {
	if !s.read.Load() {
		s.read.Store(true)
	}
	if !s.active.Load() && !s.absent.Load() {
		s.Start()
	}
	return s.Peek()
}

// Peek is Usage without starting the goroutine or counting as a use.
func (s *Sampler) Peek() (float64, bool) {
	bits := s.value.Load()
	if bits == unknownBits {
		return 0, false
	}
	return math.Float64frombits(bits), true
}

// Source returns the source of the last reading; None when the last
// attempt found none.
func (s *Sampler) Source() Source { return Source(s.source.Load()) }

// Start starts the sampling goroutine unless it runs, or its first
// reading found no source. It does not wait for a reading: the goroutine
// takes its first at once, so the usage is known one Interval later.
func (s *Sampler) Start() {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	s.startLocked()
}

func (s *Sampler) startLocked() {
	if s.active.Load() || s.absent.Load() {
		return
	}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	s.active.Store(true)
	go s.loop(s.stop, s.done)
}

// Stop stops the sampling goroutine, if it runs, and waits for it to exit.
// The usage keeps its last value; a later Usage or Start starts the
// goroutine again.
func (s *Sampler) Stop() {
	s.runMu.Lock()
	stop, done := s.takeLocked()
	s.runMu.Unlock()
	wait(stop, done)
}

// Acquire registers a user of the sampler and starts the sampling
// goroutine, as Start does. Each Acquire must be paired with one Release.
func (s *Sampler) Acquire() {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	s.users++
	s.startLocked()
}

// Release ends a use registered by Acquire. When it ends the last one, it
// stops the sampling goroutine and waits for it to exit, as Stop does. A
// Release without an Acquire does nothing.
func (s *Sampler) Release() {
	s.runMu.Lock()
	if s.users == 0 {
		s.runMu.Unlock()
		return
	}
	s.users--
	var stop, done chan struct{}
	if s.users == 0 {
		stop, done = s.takeLocked()
	}
	s.runMu.Unlock()
	wait(stop, done)
}

// takeLocked marks the loop as stopped and returns its channels, nil when
// it does not run. The caller holds runMu.
func (s *Sampler) takeLocked() (stop, done chan struct{}) {
	stop, done = s.stop, s.done
	s.stop, s.done = nil, nil
	s.active.Store(false)
	return stop, done
}

// wait stops the loop of stop and done, if any, and waits for it to exit;
// without the lock, since the loop may be in exitIdle, which takes it.
func wait(stop, done chan struct{}) {
	if stop == nil {
		return
	}
	close(stop)
	<-done
}

// Running reports whether the sampling goroutine runs.
func (s *Sampler) Running() bool { return s.active.Load() }

func (s *Sampler) loop(stop, done chan struct{}) {
	defer close(done)
	if s.sample(); s.absent.Load() {
		s.exitIdle(stop)
		return
	}
	ticks, stopTicker := s.ticker(s.interval)
	defer stopTicker()
	idle := 0
	for {
		select {
		case <-stop:
			return
		case <-ticks:
		}
		s.sample()
		if s.read.Swap(false) {
			idle = 0
		} else if idle++; idle >= s.idleTicks && s.exitIdle(stop) {
			return
		}
	}
}

// exitIdle marks the loop as stopped and reports true, unless Stop has
// taken the loop's channels: the loop then leaves when stop is closed.
func (s *Sampler) exitIdle(stop chan struct{}) bool {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.stop != stop {
		return false
	}
	s.active.Store(false)
	s.stop, s.done = nil, nil
	// done is closed by the deferred call in loop; nobody waits for it.
	// The value is stale by now: unknown until the next start reads
	// afresh.
	s.value.Store(unknownBits)
	return true
}

// sample is the loop's reading: Sample, then the test hook.
func (s *Sampler) sample() {
	s.Sample()
	if f := s.sampled; f != nil {
		f()
	}
}

// Sample takes one reading now and updates the usage. The sampling
// goroutine calls it every Interval; tests call it directly.
func (s *Sampler) Sample() {
	// Read under the lock, so that concurrent readings are applied in the
	// order they were taken.
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.readSnapshot(s.now())
	s.source.Store(uint32(snap.source))
	prev := s.prev
	if snap.source == None {
		s.prev, s.known = snapshot{}, false
		s.value.Store(unknownBits)
		if !s.seen {
			s.absent.Store(true)
		}
		return
	}
	s.seen = true
	if prev.source != snap.source {
		s.prev, s.known = snap, false
		s.value.Store(unknownBits)
		return
	}
	u, elapsed, res := usageBetween(prev, snap)
	switch res {
	case skip:
		return // no time passed: keep the baseline and the value
	case restart:
		s.prev, s.known = snap, false
		s.value.Store(unknownBits)
		return
	}
	s.prev = snap
	if !s.known {
		s.avg, s.known = u, true
	} else {
		w := math.Exp(-elapsed / s.timeConstant) // weight of the old average, in [0, 1)
		s.avg = s.avg*w + u*(1-w)
	}
	s.avg = min(max(s.avg, 0), 1)
	s.value.Store(math.Float64bits(s.avg))
}
