package redisfleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"testing"
)

// classify tells Redis failing from Redis answering strangely.
func TestClassify(t *testing.T) {
	_, numErr := strconv.ParseInt("x", 10, 64)
	for _, c := range []struct {
		err  error
		want replyClass
	}{
		{nil, replyOK},
		{context.DeadlineExceeded, replyUnavailable},
		{io.EOF, replyUnavailable},
		{fmt.Errorf("wrapped: %w", errBadReply), replyHostile},
		{fmt.Errorf("%w: 3 values", errBreakerReply), replyHostile},
		{numErr, replyHostile},
		{errors.New("dial tcp: connection refused"), replyUnavailable},
	} {
		if got := classify(c.err); got != c.want {
			t.Errorf("classify(%v) = %d, want %d", c.err, got, c.want)
		}
	}
	for msg, want := range map[string]replyClass{
		"OOM command not allowed when used memory > 'maxmemory'. script: 2cc, on @user_script:1.": replyUnavailable,
		"READONLY You can't write against a read only replica.":                                   replyUnavailable,
		"LOADING Redis is loading the dataset in memory":                                          replyUnavailable,
		"BUSY Redis is busy running a script.":                                                    replyUnavailable,
		"NOPERM this user has no permissions to access one of the keys":                           replyUnavailable,
		"NOAUTH Authentication required.":                                                         replyUnavailable,
		"MASTERDOWN Link with MASTER is down":                                                     replyUnavailable,
		"TRYAGAIN Multiple keys request during rehashing of slot":                                 replyUnavailable,
		"CLUSTERDOWN The cluster is down":                                                         replyUnavailable,
		"ERR Error running script (call to f_1): @user_script:1: bad":                             replyRefused,
		"WRONGTYPE Operation against a key holding the wrong kind of value":                       replyRefused,
	} {
		if got := classifyReply(msg); got != want {
			t.Errorf("classifyReply(%q) = %d, want %d", msg, got, want)
		}
	}
}
