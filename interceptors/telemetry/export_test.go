package telemetry

import "time"

// SetClock replaces the clock of t's overflow log limit.
func SetClock(t *Telemetry, now func() time.Time) { t.now = now }
