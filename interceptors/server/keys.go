package server

import (
	"github.com/engineeringlabs/grpc-resilience/internal/keyhash"
)

// MinKeyHashKeyLength is the shortest [Config.KeyHashKey] accepted, in
// bytes.
const MinKeyHashKeyLength = 16

// keyDisplay turns the caller keys of one stage into the form they are
// shown in outside the stage: in events, logs, spans, metrics and
// snapshots. See "Caller keys" in the package documentation.
type keyDisplay struct {
	hasher *keyhash.Hasher
	// raw: the keys are shown as they are, because the stage's ShowKeys
	// says so or because they are method names.
	raw bool
}

func newKeyDisplay(hasher *keyhash.Hasher, by Partition, show bool) keyDisplay {
	return keyDisplay{hasher: hasher, raw: show || by == PartitionByMethod}
}

// show returns the display form of a caller key: the key itself when raw
// or empty, its keyed hash otherwise.
func (d keyDisplay) show(key string) string {
	if d.raw || key == "" {
		return key
	}
	return d.hasher.Hash(key)
}
