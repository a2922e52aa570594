// Package fleet holds end-to-end tests of package redisfleet across real
// OS processes: the test binary starts itself again as several processes
// of one fleet (main_test.go, procs_test.go), which share one real
// redis-server over loopback TCP (internal/redistest).
//
//   - quota_test.go: three processes share one quota with skewed load; the
//     admitted total stays within 5% of the quota, per call and with
//     leases; then Redis is killed mid-run and restarted: no decision
//     blocks past its bound, each process falls back to its share of the
//     quota, and sharing resumes;
//   - breaker_test.go: the processes' breakers open together and probe
//     one at a time (redisfleet.Breakers).
//
// Without redis-server the tests skip with one line saying how to install
// it (in CI, CI=true, they fail). They skip under -short.
//
// It has no API; everything is in its tests.
package fleet
