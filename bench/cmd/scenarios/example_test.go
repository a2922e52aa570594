package main

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// percentile takes the nearest rank, as the scenarios report their p50 and
// p99.
func Example_percentile() {
	ds := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	fmt.Println(percentile(ds, 50), percentile(ds, 90), percentile(ds, 100))
	// Output: 5ns 9ns 10ns
}

// Every scenario result is a line in the Go benchmark format, which the
// report command and benchstat read.
func Example_emit() {
	var out bytes.Buffer
	s := settings{scale: 1, out: &out}
	s.emit("Amplification/ours", 1000, metric{1.234, "attempts/call"}, metric{1000, "calls"})
	fmt.Print(strings.ReplaceAll(out.String(), "\t", " "))
	// Output: BenchmarkAmplification/ours 1000 1.234 attempts/call 1000 calls
}

// The CPU-shedding scenario reads the server process's CPU time from
// /proc/<pid>/stat: utime and stime, fields 14 and 15, in ticks of 10ms,
// counted after the command name, which may hold spaces and parentheses.
func Example_procStatCPU() {
	fmt.Println(procStatCPU("4242 (cpu (server)) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 9 0 100 1 1"))
	// Output: 1.75s
}
