//go:build !linux

package cpuusage

import "runtime"

// allowedCPUs returns runtime.NumCPU: there is no cgroup to follow here.
func allowedCPUs() int { return runtime.NumCPU() }
