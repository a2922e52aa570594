package cpuusage

import (
	"bytes"
	"math"
	"strconv"
	"strings"
)

// The parsers below read the kernel's text files. Each returns ok=false for
// anything it does not recognise, so that a garbled or truncated file sends
// the sampler to the next source instead of yielding a wrong number.

// cgroupPaths is what /proc/self/cgroup says about the process.
type cgroupPaths struct {
	// v2 is the path of the unified (v2) hierarchy, from the "0::" line;
	// hasV2 reports whether that line was there.
	v2    string
	hasV2 bool
	// v1 maps each v1 controller ("cpu", "cpuacct") to its path and to the
	// comma-separated controller list of its hierarchy ("cpu,cpuacct"),
	// which names the directory the hierarchy is usually mounted on.
	v1 map[string]v1Path
}

type v1Path struct {
	path, hierarchy string
}

// parseCgroup parses /proc/self/cgroup: lines "id:controllers:path". Lines
// that do not have that shape are skipped; a path must be absolute.
func parseCgroup(data []byte) cgroupPaths {
	var c cgroupPaths
	for line := range strings.Lines(string(data)) {
		line = strings.TrimRight(line, "\r\n")
		id, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		controllers, path, ok := strings.Cut(rest, ":")
		if !ok || !strings.HasPrefix(path, "/") {
			continue
		}
		if id == "0" && controllers == "" {
			c.v2, c.hasV2 = path, true
			continue
		}
		for ctl := range strings.SplitSeq(controllers, ",") {
			if ctl != "cpu" && ctl != "cpuacct" {
				continue
			}
			if c.v1 == nil {
				c.v1 = make(map[string]v1Path, 2)
			}
			c.v1[ctl] = v1Path{path: path, hierarchy: controllers}
		}
	}
	return c
}

// parseV2Usage returns the usage_usec field of a cgroup v2 cpu.stat file,
// in nanoseconds. It fails when the field is missing, is not a decimal
// number or does not fit in nanoseconds.
func parseV2Usage(data []byte) (ns uint64, ok bool) {
	for line := range strings.Lines(string(data)) {
		key, value, found := strings.Cut(strings.TrimSpace(line), " ")
		if !found || key != "usage_usec" {
			continue
		}
		us, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
		if err != nil || us > math.MaxUint64/1000 {
			return 0, false
		}
		return us * 1000, true
	}
	return 0, false
}

// parseV2Max parses a cgroup v2 cpu.max file, "$MAX $PERIOD" where $MAX
// is "max" or a number of microseconds, and returns the quota as a number
// of CPUs. limited is false for "max". A period of zero, a quota of zero
// and anything else unexpected fail.
func parseV2Max(data []byte) (cpus float64, limited, ok bool) {
	fields := strings.Fields(string(data))
	if len(fields) < 1 || len(fields) > 2 {
		return 0, false, false
	}
	period := uint64(100000) // the kernel's default when only $MAX is written
	if len(fields) == 2 {
		p, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil || p == 0 {
			return 0, false, false
		}
		period = p
	}
	if fields[0] == "max" {
		return 0, false, true
	}
	quota, err := strconv.ParseUint(fields[0], 10, 64)
	if err != nil || quota == 0 {
		return 0, false, false
	}
	return float64(quota) / float64(period), true, true
}

// parseUint parses a file holding one unsigned decimal number, such as
// cgroup v1's cpuacct.usage (nanoseconds) or cpu.cfs_period_us.
func parseUint(data []byte) (uint64, bool) {
	n, err := strconv.ParseUint(string(bytes.TrimSpace(data)), 10, 64)
	return n, err == nil
}

// parseV1Quota turns cgroup v1's cpu.cfs_quota_us and cpu.cfs_period_us
// into a number of CPUs. limited is false for a quota of -1 (no limit).
// Other negative quotas, a zero quota or period and unparsable text fail.
func parseV1Quota(quotaData, periodData []byte) (cpus float64, limited, ok bool) {
	quota, err := strconv.ParseInt(string(bytes.TrimSpace(quotaData)), 10, 64)
	if err != nil || quota == 0 || quota < -1 {
		return 0, false, false
	}
	if quota == -1 {
		return 0, false, true
	}
	period, ok := parseUint(periodData)
	if !ok || period == 0 {
		return 0, false, false
	}
	return float64(quota) / float64(period), true, true
}

// parseProcStat returns the busy and total time of the aggregate "cpu "
// line of /proc/stat, in clock ticks. The line lists user, nice, system,
// idle, iowait, irq, softirq and steal time, then guest and guest_nice,
// which are already part of user and nice and are left out. Idle and
// iowait count as not busy. At least the first four fields must be there;
// older kernels have fewer than eight.
func parseProcStat(data []byte) (busy, total uint64, ok bool) {
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "cpu" {
			continue
		}
		fields = fields[1:]
		if len(fields) < 4 {
			return 0, 0, false
		}
		var idle uint64
		for i, f := range fields[:min(len(fields), 8)] {
			n, err := strconv.ParseUint(f, 10, 64)
			if err != nil || total+n < total {
				return 0, 0, false
			}
			total += n
			if i == 3 || i == 4 { // idle, iowait
				idle += n
			}
		}
		return total - idle, total, true
	}
	return 0, 0, false
}
