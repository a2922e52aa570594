package ratelimit

import (
	"errors"
	"fmt"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// Limits of the settings.
const (
	// MaxRate is the highest Rate a limiter keeps: 10^9 permits per
	// second, one per nanosecond. A higher Rate is invalid and counts as
	// MaxRate.
	MaxRate = 1e9

	// DefaultMaxKeys is the number of keys a [Keyed] keeps a limiter for
	// when KeyedConfig.MaxKeys is zero.
	DefaultMaxKeys = 10000

	// MaxKeyLen is the longest key a [Keyed] keeps a limiter for; longer
	// keys share the overflow limiter, so that hostile keys cannot make
	// each entry large.
	MaxKeyLen = 256
)

// Config configures a [Limiter]: plain data, copied by [New], so changing
// it afterwards changes nothing.
//
// The zero Config is a limiter that admits everything: a rate limit is
// something a configuration states, and a configuration that does not
// state one does not limit. A Config that states only Rate admits Rate
// permits per second with a burst of one second's worth.
//
// [New] never fails; [Config.Validate] reports the values New clamps.
type Config struct {
	// Rate is how many permits per second the limiter grants on average.
	// Zero means no limit: every request is granted at once. Fractions
	// are fine (0.5 is one permit every two seconds). Negative values,
	// NaN and infinities are invalid and count as 0; values above
	// [MaxRate] are invalid and count as MaxRate.
	//
	// The interval between permits, 1/Rate, is kept in eighths of a
	// nanosecond, rounded to the nearest: the granted rate is within 1%
	// of Rate up to 1.6×10^8 per second. A limiter's time is an int64 of
	// those units, from its creation: it runs for 36 years. A Rate below
	// about 8.7×10^-10 (one permit in 36 years) grants one permit and then
	// nothing.
	Rate float64

	// Burst is how many permits the limiter grants at one instant when it
	// has been idle: its capacity. Zero means one second's worth,
	// ceil(Rate), at least 1. Negative values are invalid and count as 0.
	// A request for more permits than Burst is never granted. A Burst
	// that takes longer than 36 years to refill (Burst/Rate) counts as the
	// largest that does not. Burst is ignored when Rate is 0.
	Burst int

	// OnLimited, when not nil, is called for every request the limiter
	// refuses, with how long until it could be granted (0 when never: more
	// permits than Burst). It runs synchronously on the goroutine of the
	// refused call, before Allow, AllowN, Wait, WaitN or Take returns; the
	// limiter holds no lock, so it may call the limiter. It must be safe
	// for concurrent use and quick.
	OnLimited func(retryAfter time.Duration)
}

// Validate reports every field of c that [New] would clamp, each as a
// *[resilience.FieldError] whose Field is the field's name ("Rate",
// "Burst"), joined with [errors.Join]; nil when c is valid. Zero fields are
// valid.
func (c Config) Validate() error {
	return errors.Join(validateLimit(c.Rate, c.Burst)...)
}

func validateLimit(rate float64, burst int) []error {
	var errs []error
	if !(rate >= 0 && rate <= MaxRate) { // catches NaN and infinities too
		errs = append(errs, &resilience.FieldError{
			Field: "Rate", Value: rate,
			Reason: fmt.Sprintf("must be between 0 (no limit) and %g permits per second", float64(MaxRate)),
		})
	}
	if burst < 0 {
		errs = append(errs, &resilience.FieldError{
			Field: "Burst", Value: burst,
			Reason: "must not be negative (0 means one second's worth of permits)",
		})
	}
	return errs
}

// KeyedConfig configures a [Keyed]: one limiter per key, each with Rate
// and Burst, at most MaxKeys of them. It is plain data, copied by
// [NewKeyed]. The zero KeyedConfig admits everything (see [Config]).
//
// [NewKeyed] never fails; [KeyedConfig.Validate] reports the values it
// clamps.
type KeyedConfig struct {
	// Rate is each key's rate in permits per second, as [Config].Rate:
	// zero means no limit; negative values, NaN and infinities are
	// invalid (and count as 0), and so are values above [MaxRate] (which
	// count as MaxRate).
	Rate float64

	// Burst is each key's burst, as [Config].Burst: zero means ceil(Rate),
	// at least 1. Negative values are invalid and count as 0.
	Burst int

	// MaxKeys is the most keys that have a limiter of their own. Zero
	// means [DefaultMaxKeys] (10000). Keys beyond it, and keys longer than
	// [MaxKeyLen] bytes, share one overflow limiter with the same Rate and
	// Burst. A key whose limiter is full again (idle for Burst/Rate) may
	// be evicted to make room for another: that changes no decision, since
	// a new limiter starts full. Negative values are invalid and count as
	// 0, which means every key shares the overflow limiter.
	MaxKeys int

	// The event hooks below are optional: a nil hook costs one comparison.
	// Each runs synchronously on the goroutine of the call that caused the
	// event, while no lock is held, so it may call the Keyed. Hooks must be
	// safe for concurrent use and quick.

	// OnLimited is called for every refused request, with its key and how
	// long until it could be granted (0 when never), before the call
	// returns.
	OnLimited func(key string, retryAfter time.Duration)

	// OnEvict is called after an idle key's limiter was dropped to make
	// room for a new key, on the goroutine of the call for the new key.
	OnEvict func(key string)

	// OnOverflow is called for every decision about a key that has no
	// limiter of its own because every place was taken by a busy key, or
	// because the key is longer than MaxKeyLen; the decision used the
	// shared overflow limiter.
	OnOverflow func(key string)
}

// Validate reports every field of c that [NewKeyed] would clamp, each as a
// *[resilience.FieldError] whose Field is the field's name ("Rate",
// "Burst", "MaxKeys"), joined with [errors.Join]; nil when c is valid.
// Zero fields are valid.
func (c KeyedConfig) Validate() error {
	errs := validateLimit(c.Rate, c.Burst)
	if c.MaxKeys < 0 {
		errs = append(errs, &resilience.FieldError{
			Field: "MaxKeys", Value: c.MaxKeys,
			Reason: fmt.Sprintf("must not be negative (0 means %d)", DefaultMaxKeys),
		})
	}
	return errors.Join(errs...)
}
