//go:build race

package server_test

// distinctKeys is how many caller keys TestPartitionCountBounded sends: the
// race detector slows each call down about sixfold, so it sends fewer, still
// hundreds of times the cap.
const distinctKeys = 20_000
