// Package integration holds end-to-end tests over real loopback TCP: whole
// servers and clients with the resilience interceptors, driven by real load
// generators (ghz) where the behaviour under load is the point. It has no
// API; everything is in its tests, which skip themselves under -short.
package integration
