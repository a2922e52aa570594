// Command fallback is a database lookup with a fallback: it retries
// transient errors, fails at once on others, and falls back to a cache when
// the database cannot answer.
package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/engineeringlabs/grpc-resilience/retry"
)

// errTransient marks errors worth another attempt, such as a dropped
// connection; errNotFound is an answer, not a failure.
var (
	errTransient = errors.New("connection reset")
	errNotFound  = errors.New("no such user")
)

// database answers from rows while up, and fails transiently while down.
type database struct {
	up      bool
	rows    map[int]string
	queries int
}

func (db *database) query(_ context.Context, id int) (string, error) {
	db.queries++
	if !db.up {
		return "", errTransient
	}
	if name, ok := db.rows[id]; ok {
		return name, nil
	}
	return "", errNotFound
}

// users reads users from the database, retrying transient errors, and
// serves the last known value from its cache when the database is down.
type users struct {
	db     *database
	cache  map[int]string
	policy *retry.Policy
}

func newUsers(db *database) *users {
	return &users{
		db:    db,
		cache: map[int]string{},
		policy: retry.New(2,
			retry.WithBackoff(retry.Constant(time.Millisecond)),
			retry.WithRetryIf(func(err error) bool { return errors.Is(err, errTransient) })),
	}
}

func (u *users) get(ctx context.Context, id int) (string, string, error) {
	name, err := retry.DoValue(ctx, u.policy, func(ctx context.Context) (string, error) {
		return u.db.query(ctx, id)
	})
	switch {
	case err == nil:
		u.cache[id] = name
		return name, "database", nil
	case errors.Is(err, errTransient):
		if cached, ok := u.cache[id]; ok {
			return cached, "cache", nil
		}
	}
	return "", "", err
}

func main() {
	ctx := context.Background()
	db := &database{up: true, rows: map[int]string{1: "ada", 2: "grace"}}
	u := newUsers(db)

	show := func(id int) {
		before := db.queries
		name, from, err := u.get(ctx, id)
		fmt.Printf("user %d: %q from %s, err=%v, queries=%d\n", id, name, from, err, db.queries-before)
	}
	show(1) // from the database, now cached
	show(3) // not found: an answer, not retried
	db.up = false
	show(1) // database down: 2 attempts, then the cache
	show(2) // down and never cached: the error
}
