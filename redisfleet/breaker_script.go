package redisfleet

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Keys and channel of the shared breaker state, under <prefix>br:. A
// breaker's keys are <prefix>br:{name} followed by a suffix. Redis Cluster
// hashes the part between the first "{" of a key and the first "}" after
// it; the three keys of a breaker differ only after the "}" this package
// writes last, so whatever the prefix and the name hold ("{" or "}"
// included), they hash alike: they live on one node and one script may
// touch them all.
const (
	breakerSpace   = "br:"
	breakerChannel = "events"
	// windowSuffix: a hash of per-second counts, fields "<unix second>:c"
	// (calls), ":f" (failures) and ":s" (slow calls).
	windowSuffix = ":w"
	// stateSuffix: a hash with the fleet's state: epoch, state ("open" or
	// "closed"), until (Redis time in ms at which the open time ends), by
	// (the process that wrote it) and reason.
	stateSuffix = ":s"
	// leaseSuffix: the probe lease, a string holding the id of the process
	// allowed to probe, with an expiry.
	leaseSuffix = ":p"
)

// breakerKeys returns the window, state and lease keys of the breaker
// name under prefix.
func breakerKeys(prefix, name string) (window, state, lease string) {
	base := prefix + breakerSpace + "{" + name + "}"
	return base + windowSuffix, base + stateSuffix, base + leaseSuffix
}

// maxCount bounds a count the scripts store or accept, far inside the exact
// integers of a float64 (Lua's numbers) even summed over MaxWindow seconds.
const maxCount = 1_000_000_000_000

// maxStoredEpoch is the largest epoch the scripts accept under a state key:
// 2^53-2, so that the next epoch (one more) is still an exact integer of
// Lua's numbers and within maxEpoch. A larger one is hostile (deleted).
const maxStoredEpoch = "9007199254740990"

// maxOpenMS bounds how far in the future a fleet state's open time may
// end (a week, in ms); a later one is hostile.
const maxOpenMS = "604800000"

// stateSource is the Lua code both scripts share: it reads and checks the
// fleet state (KEYS[2]) and defines now (Redis time, ms) and hostile (the
// number of values found that this package cannot have written, which it
// deletes).
const stateSource = `
local t = redis.call("TIME")
local sec = tonumber(t[1])
local now = sec * 1000 + math.floor(tonumber(t[2]) / 1000)
local hostile = 0
local function uint(s)
  if type(s) ~= "string" or #s > 16 or not string.match(s, "^%d+$") then return nil end
  return tonumber(s)
end
local function keytype(k, want)
  local ty = redis.call("TYPE", k).ok
  if ty ~= "none" and ty ~= want then
    redis.call("DEL", k)
    hostile = hostile + 1
    return "none"
  end
  return ty
end
local epoch, open, untilms = 0, 0, 0
if keytype(KEYS[2], "hash") == "hash" then
  local h = redis.call("HMGET", KEYS[2], "epoch", "state", "until")
  local e, u = uint(h[1]), uint(h[3])
  if e == nil or e > ` + maxStoredEpoch + ` or u == nil or u > now + ` + maxOpenMS + ` or (h[2] ~= "open" and h[2] ~= "closed") then
    redis.call("DEL", KEYS[2])
    hostile = hostile + 1
  else
    epoch, untilms = e, u
    if h[2] == "open" then open = 1 end
  end
end
`

// syncSource adds this process's counts to the window, reads the fleet's
// totals over the window and its state, and deals with the probe lease, in
// one round trip.
//
// KEYS: window, state, lease. ARGV: calls, failures and slow calls to add;
// the window in seconds; this process's id; "1" to take the lease if it is
// free and the fleet's open time is over; "1" to extend the lease if this
// process holds it; the lease duration in ms.
//
// It returns {now, calls, failures, slow calls, epoch, open (0/1), until,
// lease held (0/1), lease ms left, hostile}.
const syncSource = stateSource + `
local win = tonumber(ARGV[4])
local calls, fails, slows = 0, 0, 0
if keytype(KEYS[1], "hash") == "hash" then
  if redis.call("HLEN", KEYS[1]) > 3 * win + 32 then
    redis.call("DEL", KEYS[1])
    hostile = hostile + 1
  else
    local all = redis.call("HGETALL", KEYS[1])
    for i = 1, #all, 2 do
      local fs, fk = string.match(all[i], "^(%d+):([cfs])$")
      local fsec = fs and #fs <= 12 and tonumber(fs)
      local v = uint(all[i + 1])
      if not fsec or not v or v > ` + "1000000000000" + ` or fsec > sec then
        redis.call("HDEL", KEYS[1], all[i])
        hostile = hostile + 1
      elseif fsec <= sec - win then
        redis.call("HDEL", KEYS[1], all[i])
      elseif fk == "c" then calls = calls + v
      elseif fk == "f" then fails = fails + v
      else slows = slows + v end
    end
  end
end
local c, f, s = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if c > 0 then
  redis.call("HINCRBY", KEYS[1], sec .. ":c", c)
  if f > 0 then redis.call("HINCRBY", KEYS[1], sec .. ":f", f) end
  if s > 0 then redis.call("HINCRBY", KEYS[1], sec .. ":s", s) end
  redis.call("PEXPIRE", KEYS[1], (win + 1) * 1000)
  calls, fails, slows = calls + c, fails + f, slows + s
end
local leased, left = 0, 0
if keytype(KEYS[3], "string") == "string" then
  local pttl = redis.call("PTTL", KEYS[3])
  if pttl < 0 or pttl > 10 * tonumber(ARGV[8]) then
    redis.call("DEL", KEYS[3])
    hostile = hostile + 1
  end
end
if open == 1 and now >= untilms then
  local holder = redis.call("GET", KEYS[3])
  if holder == ARGV[5] then
    if ARGV[7] == "1" then redis.call("PEXPIRE", KEYS[3], ARGV[8]) end
    leased, left = 1, redis.call("PTTL", KEYS[3])
  elseif not holder and ARGV[6] == "1" then
    redis.call("SET", KEYS[3], ARGV[5], "PX", ARGV[8])
    leased, left = 1, tonumber(ARGV[8])
  end
end
return {now, calls, fails, slows, epoch, open, untilms, leased, left, hostile}
`

// transitionSource moves the fleet state and announces the change on the
// channel, in one round trip.
//
// KEYS: window, state, lease. ARGV: "open" or "closed"; the open duration
// in ms; this process's id; the epoch a close expects; the channel; the
// breaker's name; the reason; how long (ms) a state outlives its last
// change.
//
// Opening does nothing while the fleet is open and its open time runs;
// otherwise (closed, or open with its open time over: probing) it starts a
// new epoch, open until now plus the open duration, and frees the lease.
// Closing does nothing unless the fleet is open in the expected epoch;
// then it starts a new, closed epoch, frees the lease and empties the
// window, so that the old failures do not open the fleet again.
//
// It returns {epoch, open (0/1), until, changed (0/1), hostile}.
const transitionSource = stateSource + `
local keep = tonumber(ARGV[8])
if ARGV[1] == "open" then
  if open == 1 and now < untilms then
    return {epoch, open, untilms, 0, hostile}
  end
  epoch, open, untilms = epoch + 1, 1, now + tonumber(ARGV[2])
else
  if open ~= 1 or epoch ~= tonumber(ARGV[4]) then
    return {epoch, open, untilms, 0, hostile}
  end
  epoch, open, untilms = epoch + 1, 0, 0
  redis.call("DEL", KEYS[1])
end
redis.call("HSET", KEYS[2], "epoch", string.format("%d", epoch), "state", ARGV[1], "until", string.format("%d", untilms), "by", ARGV[3], "reason", ARGV[7])
redis.call("PEXPIRE", KEYS[2], math.max(untilms - now, 0) + keep)
redis.call("DEL", KEYS[3])
redis.call("PUBLISH", ARGV[5], "1 " .. string.format("%d", epoch) .. " " .. ARGV[1] .. " " .. string.format("%d", untilms) .. " " .. ARGV[3] .. " " .. ARGV[6])
return {epoch, open, untilms, 1, hostile}
`

// errBreakerReply reports a script reply or a message of the breaker
// channel that does not have the expected shape.
var errBreakerReply = errors.New("redisfleet: malformed breaker reply")

// maxLeaseLeftMS bounds the time left on a lease in a reply: the scripts
// delete a lease ten times longer than the longest ProbeLease.
const maxLeaseLeftMS = 10 * int64(MaxProbeLease/time.Millisecond)

// maxEpoch bounds an epoch: Lua counts in float64, exact up to 2^53.
const maxEpoch = 1 << 53

// fleetState is the fleet's view of one breaker.
type fleetState struct {
	epoch   uint64
	open    bool
	untilMS int64 // Redis time (ms) at which the open time ends
}

// syncReply is the decoded reply of syncSource.
type syncReply struct {
	nowMS                  int64
	calls, failures, slows int64
	state                  fleetState
	leased                 bool
	leaseLeftMS            int64
	hostile                int64
}

// parseSyncReply decodes the reply of syncSource.
func parseSyncReply(v []int64) (syncReply, error) {
	if len(v) != 10 {
		return syncReply{}, fmt.Errorf("%w: %d values, want 10", errBreakerReply, len(v))
	}
	for i, x := range v {
		if x < 0 {
			return syncReply{}, fmt.Errorf("%w: value %d is %d", errBreakerReply, i, x)
		}
	}
	st, err := parseState(v[4], v[5], v[6])
	if err != nil {
		return syncReply{}, err
	}
	if v[7] > 1 || v[8] > maxLeaseLeftMS {
		return syncReply{}, fmt.Errorf("%w: lease %d, %dms", errBreakerReply, v[7], v[8])
	}
	r := syncReply{
		nowMS: v[0], calls: v[1], failures: v[2], slows: v[3], state: st,
		leased: v[7] == 1, leaseLeftMS: v[8], hostile: v[9],
	}
	if r.failures > r.calls || r.slows > r.calls {
		// Counts written by processes that saw different windows may
		// disagree for a moment; never report a rate above 100%.
		r.failures, r.slows = min(r.failures, r.calls), min(r.slows, r.calls)
	}
	return r, nil
}

// transitionReply is the decoded reply of transitionSource.
type transitionReply struct {
	state   fleetState
	changed bool
	hostile int64
}

// parseTransitionReply decodes the reply of transitionSource.
func parseTransitionReply(v []int64) (transitionReply, error) {
	if len(v) != 5 || v[3] < 0 || v[3] > 1 || v[4] < 0 {
		return transitionReply{}, fmt.Errorf("%w: %v", errBreakerReply, v)
	}
	st, err := parseState(v[0], v[1], v[2])
	if err != nil {
		return transitionReply{}, err
	}
	return transitionReply{state: st, changed: v[3] == 1, hostile: v[4]}, nil
}

func parseState(epoch, open, until int64) (fleetState, error) {
	if epoch < 0 || epoch > maxEpoch || open < 0 || open > 1 || until < 0 {
		return fleetState{}, fmt.Errorf("%w: state %d %d %d", errBreakerReply, epoch, open, until)
	}
	return fleetState{epoch: uint64(epoch), open: open == 1, untilMS: until}, nil
}

// message is a transition announced on the breaker channel:
// "1 <epoch> <open|closed> <until ms> <process id> <name>". The name comes
// last and may hold spaces.
type message struct {
	state  fleetState
	origin string
	name   string
}

// maxMessageLen bounds a message of the breaker channel.
const maxMessageLen = 64 << 10

// parseMessage decodes a message of the breaker channel.
func parseMessage(s string) (message, error) {
	if len(s) > maxMessageLen {
		return message{}, fmt.Errorf("%w: message of %d bytes", errBreakerReply, len(s))
	}
	f := strings.SplitN(s, " ", 6)
	if len(f) != 6 || f[0] != "1" {
		return message{}, fmt.Errorf("%w: message %.64q", errBreakerReply, s)
	}
	epoch, err1 := strconv.ParseUint(f[1], 10, 64)
	until, err2 := strconv.ParseUint(f[3], 10, 63)
	if err1 != nil || err2 != nil || epoch > maxEpoch || (f[2] != "open" && f[2] != "closed") || f[4] == "" || f[5] == "" {
		return message{}, fmt.Errorf("%w: message %.64q", errBreakerReply, s)
	}
	return message{
		state:  fleetState{epoch: epoch, open: f[2] == "open", untilMS: int64(until)},
		origin: f[4],
		name:   f[5],
	}, nil
}
