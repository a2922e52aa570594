//go:build !race

package telemetry_test

// raceEnabled reports whether the race detector is on; it changes
// allocation counts.
const raceEnabled = false
