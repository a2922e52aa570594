//go:build !linux

package main

import "errors"

// canSetUp reports whether the server process of the CPU-shedding scenario
// can set itself up (cgroups, core, priority) and start again: only on
// Linux.
const canSetUp = false

// pinToCore does nothing off Linux.
func pinToCore(int) error { return nil }

// raisePriority does nothing off Linux.
func raisePriority(int) {}

// viewCgroupsAsRoot does nothing off Linux.
func viewCgroupsAsRoot([]string) error { return nil }

// execSelf is not available off Linux.
func execSelf(string, []string, []string) error {
	return errors.New("restarting the server process is only supported on Linux")
}
