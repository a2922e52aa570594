package cpuusage

import (
	"math/bits"
	"runtime"
	"syscall"
	"unsafe"
)

// allowedCPUs returns how many CPUs the calling thread may run on now, by
// its affinity mask, which the kernel keeps in step with the cgroup's
// cpuset; runtime.NumCPU, read at process start, when the mask cannot be
// read.
func allowedCPUs() int {
	var mask [1024 / 64]uint64
	_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, 0, unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask)))
	if errno != 0 {
		return runtime.NumCPU()
	}
	n := 0
	for _, w := range mask {
		n += bits.OnesCount64(w)
	}
	if n == 0 {
		return runtime.NumCPU()
	}
	return n
}
