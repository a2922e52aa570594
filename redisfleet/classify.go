package redisfleet

import (
	"errors"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// replyClass is what the error of one round trip says about Redis. Both
// halves of the package (Limiter and Breakers) decide with classify.
type replyClass int

const (
	// replyOK: Redis answered as the scripts do.
	replyOK replyClass = iota
	// replyHostile: Redis answered, with a reply of a shape the scripts
	// never return (a value under a key was tampered with, or the reply
	// was garbled). Redis is up.
	replyHostile
	// replyRefused: Redis refused this one command with an error reply
	// that does not say it cannot serve (a script error, a key an ACL
	// denies inside a script). Redis is up, but the command failed.
	replyRefused
	// replyUnavailable: Redis cannot serve now: a transport error, a
	// timeout, or an error reply that says so (out of memory, read-only
	// replica, loading, busy script, no permission, not authenticated,
	// master down, cluster down, try again, failed persistence).
	replyUnavailable
)

// unavailableCodes are the error-reply codes (the first word of the
// reply) that say Redis cannot serve the package's scripts now.
var unavailableCodes = map[string]bool{
	"OOM": true, "READONLY": true, "LOADING": true, "BUSY": true,
	"NOPERM": true, "NOAUTH": true, "WRONGPASS": true, "MASTERDOWN": true,
	"TRYAGAIN": true, "CLUSTERDOWN": true, "MISCONF": true, "NOREPLICAS": true,
}

// classify returns what err, from a round trip and the decoding of its
// reply, says about Redis.
func classify(err error) replyClass {
	if err == nil {
		return replyOK
	}
	if re, ok := rueidis.IsRedisErr(err); ok {
		if re.IsNil() {
			return replyHostile // the scripts never return nil
		}
		return classifyReply(re.Error())
	}
	var num *strconv.NumError
	if rueidis.IsParseErr(err) || errors.Is(err, errBadReply) || errors.Is(err, errBreakerReply) || errors.As(err, &num) {
		return replyHostile
	}
	return replyUnavailable
}

// classifyReply returns what an error reply with text msg says about
// Redis: unavailable when its code (the first word) says Redis cannot
// serve, refused otherwise.
func classifyReply(msg string) replyClass {
	code, _, _ := strings.Cut(msg, " ")
	if unavailableCodes[code] {
		return replyUnavailable
	}
	return replyRefused
}
