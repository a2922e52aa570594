package retry

import (
	"context"
	"time"
)

// clock is the time source of a Policy; tests replace it. Implementations
// must be safe for concurrent use.
type clock interface {
	now() time.Time
	// sleep waits d, or until ctx is done, and then returns ctx.Err().
	sleep(ctx context.Context, d time.Duration) error
}

// realClock is the clock of the time package.
type realClock struct{}

func (realClock) now() time.Time { return time.Now() }

func (realClock) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
