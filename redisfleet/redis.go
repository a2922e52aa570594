package redisfleet

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// DefaultPrefix is the key prefix of the zero Config: every key and
// channel this package uses starts with the prefix, so that several
// applications (or environments) can share one Redis by using different
// prefixes.
const DefaultPrefix = "grpcres:"

// MaxPrefixLen is the longest key prefix a Config takes.
const MaxPrefixLen = 256

// Key namespaces under the prefix: the limiter keeps its buckets under
// <prefix>rl: and the live processes in <prefix>procs; the breaker keeps
// its state under <prefix>br:.
const (
	limiterSpace  = "rl:"
	presenceSpace = "procs"
)

// prefixOr returns p, or DefaultPrefix when p is empty.
func prefixOr(p string) string {
	if p == "" {
		return DefaultPrefix
	}
	return p
}

// checkPrefix returns a *resilience.FieldError for a prefix a Config must
// not take, nil otherwise.
func checkPrefix(p string) error {
	if len(p) > MaxPrefixLen {
		return &resilience.FieldError{Field: "Prefix", Value: p, Reason: fmt.Sprintf("longer than %d bytes", MaxPrefixLen)}
	}
	if strings.ContainsAny(p, "{}") {
		return &resilience.FieldError{Field: "Prefix", Value: p, Reason: "holds a brace, which Redis Cluster would read as the hash tag of every key"}
	}
	return nil
}

// checkClient returns a *resilience.FieldError when c is nil.
func checkClient(c rueidis.Client) error {
	if c == nil {
		return &resilience.FieldError{Field: "Client", Value: nil, Reason: "required"}
	}
	return nil
}

// quotaKeyBase returns the part of a quota's keys before the caller key's
// digest: prefix, namespace, then the quota name with its length, so that
// no choice of quota name and caller key can produce the key of another
// pair.
func quotaKeyBase(prefix, quota string) string {
	return prefix + limiterSpace + strconv.Itoa(len(quota)) + ":" + quota + ":"
}

// keyDigest returns what a quota's Redis key holds of a caller key: the
// first 16 bytes of its SHA-256, in unpadded base64url (22 bytes). Caller
// keys may be secrets (API keys) and of any length; the digest stores no
// secret at rest and bounds the key's length, and 128 bits make two caller
// keys sharing a bucket by chance negligible.
func keyDigest(key string) string {
	sum := sha256.Sum256([]byte(key))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// newProcessID returns an identifier for this process in the presence
// set: host name, process id and random bytes, unique across restarts.
func newProcessID() string {
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// presenceSource announces a process and counts the live ones. KEYS[1] is
// a sorted set of process ids scored by their last heartbeat (Redis' TIME,
// in microseconds); ARGV[1] is this process's id, ARGV[2] how long (in
// microseconds) a process counts as live after its last heartbeat, ARGV[3]
// "1" to leave (remove the id) instead of announcing it. It returns
// {live processes, hostile}: hostile is 1 when the key held another type,
// which the script replaced, or members announced in the future, which it
// removed.
const presenceSource = `
local ttl = tonumber(ARGV[2])
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hostile = 0
if redis.call("TYPE", KEYS[1]).ok ~= "zset" and redis.call("EXISTS", KEYS[1]) == 1 then
  redis.call("DEL", KEYS[1])
  hostile = 1
end
if ARGV[3] == "1" then
  redis.call("ZREM", KEYS[1], ARGV[1])
else
  redis.call("ZADD", KEYS[1], string.format("%.0f", now), ARGV[1])
end
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", string.format("(%.0f", now - ttl))
if redis.call("ZREMRANGEBYSCORE", KEYS[1], string.format("(%.0f", now + ttl), "+inf") > 0 then
  hostile = 1
end
redis.call("PEXPIRE", KEYS[1], string.format("%.0f", math.ceil(ttl / 1000)))
return {redis.call("ZCARD", KEYS[1]), hostile}
`

// parsePresenceReply decodes the presence script's reply.
func parsePresenceReply(v []int64) (live int, hostile bool, err error) {
	if len(v) != 2 || v[0] < 0 || v[0] > 1<<31 || v[1] < 0 || v[1] > 1 {
		return 0, false, fmt.Errorf("%w: %v", errBadReply, v)
	}
	return int(v[0]), v[1] == 1, nil
}
