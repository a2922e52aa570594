//go:build !race

package keyhash

const raceEnabled = false
