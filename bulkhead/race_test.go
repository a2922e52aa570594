//go:build race

package bulkhead

// raceEnabled reports whether the race detector is on; it changes
// allocation counts, so the allocation tests skip themselves under it.
const raceEnabled = true
