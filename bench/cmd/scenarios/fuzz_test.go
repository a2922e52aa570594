package main

import (
	"testing"
	"time"
)

// FuzzProcStatCPU feeds procStatCPU arbitrary text: it never panics and
// never returns a negative duration.
func FuzzProcStatCPU(f *testing.F) {
	f.Add("42 (scenarios) S 1 42 42 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 9 0 100 1 1")
	f.Add("42 (a) b) R 1 2 3 4 5 6 7 8 9 10 68719476736 68719476736")
	f.Add(")")
	f.Fuzz(func(t *testing.T, stat string) {
		if got := procStatCPU(stat); got < 0 || got > 2*maxTicks*(time.Second/clockTicks) {
			t.Errorf("procStatCPU(%q) = %v, want within [0, 2*maxTicks ticks]", stat, got)
		}
	})
}
