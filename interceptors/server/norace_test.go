//go:build !race

package server_test

// distinctKeys is how many caller keys TestPartitionCountBounded sends.
const distinctKeys = 100_000
