package main

import (
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// canSetUp reports whether the server process of the CPU-shedding scenario
// can set itself up (cgroups, core, priority) and start again.
const canSetUp = true

// pinToCore pins the calling thread to CPU core; threads it starts, and a
// program it execs, inherit that.
func pinToCore(core int) error {
	var set unix.CPUSet
	set.Set(core)
	return unix.SchedSetaffinity(0, &set)
}

// raisePriority sets the calling thread's nice value to nice, best effort:
// raising it takes privileges the process may not have.
func raisePriority(nice int) {
	_ = unix.Setpriority(unix.PRIO_PROCESS, 0, nice) // best effort, see above
}

// viewCgroupsAsRoot moves the calling thread to a mount namespace of its
// own, in which each directory of dirs (a cgroup, "/sys/fs/cgroup/cpu/x")
// is mounted over the root of its hierarchy ("/sys/fs/cgroup/cpu"), as a
// container sees its cgroup. go-zero and aegis read the root of each
// hierarchy and ignore the process's path in it. Nothing changes outside
// the namespace.
func viewCgroupsAsRoot(dirs []string) error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	for _, d := range dirs {
		if err := unix.Mount(d, filepath.Dir(d), "", unix.MS_BIND, ""); err != nil {
			return err
		}
	}
	return nil
}

// execSelf replaces the process with the program at path.
func execSelf(path string, args, env []string) error {
	return syscall.Exec(path, args, env)
}
