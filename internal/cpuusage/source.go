package cpuusage

import (
	"io/fs"
	"math"
	"path"
	"time"
)

// snapshot is one reading of a source's cumulative counters.
type snapshot struct {
	source Source
	at     time.Time
	// used is the CPU time used: nanoseconds for the cgroup sources, busy
	// clock ticks for ProcStat.
	used uint64
	// total is the time there was, in clock ticks; ProcStat only.
	total uint64
	// capacity is the number of CPUs the cgroup may use; cgroup sources
	// only.
	capacity float64
}

// result says what to do with an interval between two snapshots.
type result uint8

const (
	ok      result = iota // the usage is valid
	skip                  // no time passed: ignore the newer snapshot
	restart               // unusable: start afresh from the newer one
)

// usageBetween returns the usage over the interval from a to b, both of the
// same source, and the interval's length in seconds. The usage is in
// [0, 1] whenever the result is ok.
func usageBetween(a, b snapshot) (usage, seconds float64, res result) {
	elapsed := b.at.Sub(a.at)
	switch {
	case elapsed < 0:
		return 0, 0, restart // the clock went backwards
	case b.used < a.used || b.total < a.total:
		return 0, 0, restart // a counter went backwards: reset or another cgroup
	}
	used := float64(b.used - a.used)
	var capacity float64
	if a.source == ProcStat {
		if b.total == a.total {
			return 0, 0, skip
		}
		capacity = float64(b.total - a.total)
	} else {
		if elapsed == 0 {
			return 0, 0, skip
		}
		if !(b.capacity > 0) || math.IsInf(b.capacity, 1) {
			return 0, 0, restart
		}
		capacity = float64(elapsed) * b.capacity
	}
	if elapsed == 0 {
		// ProcStat counters moved while the clock stood still: a coarse
		// clock. The usage is valid; give it a minimal weight.
		elapsed = 1
	}
	return min(used/capacity, 1), elapsed.Seconds(), ok
}

const cgroupRoot = "sys/fs/cgroup"

// readSnapshot reads the first source that answers.
func (s *Sampler) readSnapshot(now time.Time) snapshot {
	paths := parseCgroup(s.readFile("proc/self/cgroup"))
	n := 0
	if s.numCPU != nil {
		n = s.numCPU()
	} else {
		n = allowedCPUs()
	}
	cpus := float64(max(n, 1))
	if snap, ok := s.readV2(paths, cpus); ok {
		snap.at = now
		return snap
	}
	if snap, ok := s.readV1(paths, cpus); ok {
		snap.at = now
		return snap
	}
	if busy, total, ok := parseProcStat(s.readFile("proc/stat")); ok {
		return snapshot{source: ProcStat, at: now, used: busy, total: total}
	}
	return snapshot{}
}

// readFile returns the content of name, or nil when it cannot be read.
func (s *Sampler) readFile(name string) []byte {
	data, err := fs.ReadFile(s.fsys, name)
	if err != nil {
		return nil
	}
	return data
}

// exists reports whether name can be opened.
func (s *Sampler) exists(name string) bool {
	_, err := fs.Stat(s.fsys, name)
	return err == nil
}

// cgroupDir returns the directory of a cgroup at cgPath in the hierarchy
// mounted on mount, given that file must exist in it. When the process's
// own path is not visible (a container whose cgroup namespace root is the
// mount), it falls back to the mount itself.
func (s *Sampler) cgroupDir(mount, cgPath, file string) (string, bool) {
	dir := path.Join(mount, path.Clean("/"+cgPath)) // Clean drops any ".."
	if s.exists(path.Join(dir, file)) {
		return dir, true
	}
	if s.exists(path.Join(mount, file)) {
		return mount, true
	}
	return "", false
}

// quota returns the smallest CPU quota of dir and its ancestors up to
// mount, read by one, or cpus when none is lower. ok is false when a
// quota file exists but is garbled.
func (s *Sampler) quota(mount, dir string, cpus float64, one func(dir string) (float64, bool, bool)) (float64, bool) {
	capacity := cpus
	for {
		q, limited, ok := one(dir)
		if !ok {
			return 0, false
		}
		if limited {
			capacity = math.Min(capacity, q)
		}
		if dir == mount || len(dir) <= len(mount) {
			return capacity, true
		}
		dir = path.Dir(dir)
	}
}

func (s *Sampler) readV2(paths cgroupPaths, cpus float64) (snapshot, bool) {
	if !paths.hasV2 {
		return snapshot{}, false
	}
	dir, found := s.cgroupDir(cgroupRoot, paths.v2, "cpu.stat")
	if !found {
		return snapshot{}, false
	}
	used, ok := parseV2Usage(s.readFile(path.Join(dir, "cpu.stat")))
	if !ok {
		return snapshot{}, false
	}
	capacity, ok := s.quota(cgroupRoot, dir, cpus, func(dir string) (float64, bool, bool) {
		data := s.readFile(path.Join(dir, "cpu.max"))
		if data == nil {
			return 0, false, true // the root cgroup has no cpu.max
		}
		return parseV2Max(data)
	})
	if !ok {
		return snapshot{}, false
	}
	return snapshot{source: CgroupV2, used: used, capacity: capacity}, true
}

// v1Mount returns the directory the v1 hierarchy holding controller is
// mounted on and the cgroup's directory in it, which holds file.
func (s *Sampler) v1Mount(paths cgroupPaths, controller, file string) (mount, dir string, ok bool) {
	p, found := paths.v1[controller]
	if !found {
		return "", "", false
	}
	for _, name := range []string{controller, p.hierarchy} {
		mount = path.Join(cgroupRoot, path.Clean("/"+name))
		if dir, ok = s.cgroupDir(mount, p.path, file); ok {
			return mount, dir, true
		}
	}
	return "", "", false
}

func (s *Sampler) readV1(paths cgroupPaths, cpus float64) (snapshot, bool) {
	_, dir, found := s.v1Mount(paths, "cpuacct", "cpuacct.usage")
	if !found {
		return snapshot{}, false
	}
	used, ok := parseUint(s.readFile(path.Join(dir, "cpuacct.usage")))
	if !ok {
		return snapshot{}, false
	}
	capacity := cpus
	if mount, dir, found := s.v1Mount(paths, "cpu", "cpu.cfs_quota_us"); found {
		capacity, ok = s.quota(mount, dir, cpus, func(dir string) (float64, bool, bool) {
			q := s.readFile(path.Join(dir, "cpu.cfs_quota_us"))
			if q == nil {
				return 0, false, true
			}
			return parseV1Quota(q, s.readFile(path.Join(dir, "cpu.cfs_period_us")))
		})
		if !ok {
			return snapshot{}, false
		}
	}
	return snapshot{source: CgroupV1, used: used, capacity: capacity}, true
}
