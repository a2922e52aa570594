//go:build race

package main

// raceEnabled reports whether the race detector is on. failsafe-go's
// hedged gRPC calls race under it (every hedge decodes into the caller's
// reply), so the scenario that runs every hedging library runs without it
// only.
const raceEnabled = true
