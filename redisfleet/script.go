package redisfleet

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// gcraSource is the GCRA decision, evaluated in Redis so that every
// process shares one state and one clock (Redis' TIME).
//
// KEYS[1] holds the key's theoretical arrival time (TAT), in microseconds
// since the Unix epoch, as a decimal number. ARGV: the emission interval
// 1/rate and the limit burst×interval, both in microseconds (decimal,
// possibly fractional); the permits asked, n; and "1" to grant as many
// permits as are available up to n (at least one), "0" to grant n or
// nothing.
//
// It returns {granted, retryAfter, hostile}: the permits granted (0 when
// refused); when refused, the microseconds until the asked permits (one,
// when partial) would be granted, rounded up, or -1 when never (more than
// the burst); and 1 when the stored value was not a TAT this script could
// have written (another type, garbage, a time more than maxAheadMicros
// ahead), which it then treats as absent and overwrites or deletes.
//
// A TAT beyond now plus the limit was written under a larger burst or a
// slower rate: it counts as now plus the limit (an empty bucket), so that
// lowering a quota never refills its buckets.
//
// A granted decision stores the new TAT with an expiry at the moment it
// passes: an expired key and a key whose TAT is in the past mean the same,
// a full bucket.
const gcraSource = `
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local partial = ARGV[4] == "1"
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hostile = 0
local tat = now
local v = redis.pcall("GET", KEYS[1])
if type(v) == "table" and v.err then
  hostile = 1
elseif v then
  local x = tonumber(v)
  if x == nil or x ~= x or x > now + ` + maxAheadMicros + ` then
    hostile = 1
  elseif x > now then
    tat = math.min(x, now + limit)
  end
end
local avail = math.floor((limit - (tat - now)) / interval + 1e-6)
local want = n
if partial then
  want = math.max(1, math.min(n, avail))
end
if want <= avail then
  local newtat = tat + want * interval
  local px = math.min(math.max(1, math.ceil((newtat - now) / 1000)), 1e15)
  redis.call("SET", KEYS[1], string.format("%.17g", newtat), "PX", string.format("%.0f", px))
  return {want, 0, hostile}
end
if hostile == 1 then
  redis.call("DEL", KEYS[1])
end
if want * interval > limit * (1 + 1e-9) then
  return {0, -1, hostile}
end
return {0, math.max(1, math.ceil(tat + want * interval - limit - now)), hostile}
`

// maxAheadMicros is how far ahead of Redis' clock a stored TAT may be
// before the script takes it as hostile: two years, twice the longest
// limit (maxIntervalMicros).
const maxAheadMicros = "63072000000000"

// gcraScript is gcraSource run by its SHA (EVALSHA), and by its source
// (EVAL) when the server does not know it (NOSCRIPT: after a restart or a
// SCRIPT FLUSH).
var gcraScript = rueidis.NewLuaScript(gcraSource)

// scriptParams are a quota's rate and burst as the script takes them.
type scriptParams struct {
	unlimited bool
	burst     int
	interval  string // microseconds per permit
	limit     string // burst × interval, microseconds
}

// maxIntervalMicros bounds the emission interval: a rate slower than one
// permit a year is one permit a year, which keeps the script's numbers
// (microseconds since the epoch plus the limit) far inside the exact range
// of a float64.
const maxIntervalMicros = 365 * 24 * 3600 * 1e6

// newScriptParams normalizes rate and burst as package ratelimit does
// (zero or invalid rate: no limit; zero burst: ceil(rate), at least 1) and
// formats them for the script.
func newScriptParams(rate float64, burst int) scriptParams {
	if !(rate > 0) || math.IsInf(rate, 1) {
		return scriptParams{unlimited: true}
	}
	rate = min(rate, maxRate)
	if burst <= 0 {
		burst = int(max(math.Ceil(rate), 1))
	}
	interval := min(1e6/rate, maxIntervalMicros)
	// The limit stays within a year too, so that a huge burst at a slow
	// rate cannot push a TAT out of the exact range.
	burst = min(burst, max(1, int(maxIntervalMicros/interval)))
	return scriptParams{
		burst:    burst,
		interval: strconv.FormatFloat(interval, 'g', -1, 64),
		limit:    strconv.FormatFloat(float64(burst)*interval, 'g', -1, 64),
	}
}

// maxRate is the fastest rate a quota takes, as package ratelimit's
// MaxRate: 10^9 permits per second.
const maxRate = 1e9

// takeReply is the decoded answer of the script.
type takeReply struct {
	granted    int           // permits granted; 0 when refused
	retryAfter time.Duration // when refused: until the asked permits; 0 when never
	hostile    bool          // the stored value was garbage and was reset
}

// errBadReply reports a script reply that is not what the script returns.
var errBadReply = errors.New("redisfleet: unexpected reply from the rate-limit script")

// parseTakeReply decodes the script's reply to a request for n permits
// (n >= 1), rejecting anything the script cannot have returned.
func parseTakeReply(v []int64, n int) (takeReply, error) {
	if len(v) != 3 {
		return takeReply{}, fmt.Errorf("%w: %d values", errBadReply, len(v))
	}
	granted, retry, hostile := v[0], v[1], v[2]
	if granted < 0 || granted > int64(n) || hostile < 0 || hostile > 1 {
		return takeReply{}, fmt.Errorf("%w: %v", errBadReply, v)
	}
	r := takeReply{granted: int(granted), hostile: hostile == 1}
	switch {
	case granted > 0 && retry != 0, granted == 0 && (retry == 0 || retry < -1):
		return takeReply{}, fmt.Errorf("%w: %v", errBadReply, v)
	case retry > 0:
		r.retryAfter = microsToDuration(retry)
	}
	return r, nil
}

// microsToDuration converts a positive number of microseconds to a
// Duration, saturating.
func microsToDuration(us int64) time.Duration {
	if us >= math.MaxInt64/int64(time.Microsecond) {
		return math.MaxInt64
	}
	return time.Duration(us) * time.Microsecond
}
