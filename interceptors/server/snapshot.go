package server

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/ratelimit"
)

// ServerSnapshot is the state of a [Server] at one moment, for consoles,
// health pages and tests: its bulkhead and each partition, its rate-limit
// quotas and each key, the faults it injects and its deadline settings.
// It is plain data, a copy that later calls do not change; every list in
// it is sorted, and its size is bounded by the configuration: at most
// [BulkheadConfig.MaxPartitions] bulkhead partitions, and at most
// [RateLimitConfig.MaxPartitions] keys per quota.
//
// Caller keys appear only in their display form: see "Caller keys" in the
// package documentation.
type ServerSnapshot struct {
	// Exempt is [Config.Exempt].
	Exempt []string
	// Deadline is the deadline configuration.
	Deadline DeadlineConfig
	// Faults is the fault schedule in force ([Chaos.Faults]).
	Faults FaultConfig
	// Bulkhead is the bulkhead.
	Bulkhead BulkheadSnapshot
	// RateLimit is the rate limit.
	RateLimit RateLimitSnapshot
}

// BulkheadSnapshot is the state of a server's bulkhead. It is plain data.
type BulkheadSnapshot struct {
	// Enabled is false when [BulkheadConfig.Limit] is zero; the other
	// fields are then zero.
	Enabled bool
	// PartitionBy, Header, Limit, Queue, MaxWait and ShowKeys are the
	// configuration's; Adaptive reports an adaptive limit, whose value in
	// force is each partition's Metrics.Limit. MaxPartitions is the cap in
	// force, its default filled in; zero with PartitionNone.
	PartitionBy   Partition
	Header        string
	Limit         int
	Queue         int
	MaxWait       time.Duration
	Adaptive      bool
	MaxPartitions int
	ShowKeys      bool
	// Shared is the partition shared by every call with PartitionNone, and
	// otherwise by the calls without a key and the keys beyond the cap.
	Shared bulkhead.Metrics
	// Partitions has one entry per keyed partition, sorted by Key.
	Partitions []PartitionSnapshot
}

// PartitionSnapshot is one keyed partition of a server's bulkhead. It is
// plain data.
type PartitionSnapshot struct {
	// Key is the partition's key in its display form
	// ([Bulkhead.DisplayKey]).
	Key string
	// Metrics are the partition's counts and limit.
	Metrics bulkhead.Metrics
}

// RateLimitSnapshot is the state of a server's rate limit. It is plain
// data.
type RateLimitSnapshot struct {
	// Enabled is false when the configuration sets no quota; the other
	// fields are then zero.
	Enabled bool
	// PartitionBy, Header and ShowKeys are the configuration's.
	PartitionBy Partition
	Header      string
	ShowKeys    bool
	// Quotas has one entry per quota, sorted by Name: the default quota
	// ("") first.
	Quotas []QuotaSnapshot
}

// QuotaSnapshot is one quota of a server's rate limit. It is plain data.
type QuotaSnapshot struct {
	// Name is "" for the default quota, or its key of
	// [RateLimitConfig.Methods].
	Name string
	// Class names the quota as events and the QuotaFailure do, such as
	// "all", "header:x-api-key" or "service:pkg.Svc,peer".
	Class string
	// Rate and Burst are the quota's, Burst with its default filled in.
	Rate  float64
	Burst int
	// Store reports a quota decided by [RateLimitConfig.Store]: it keeps
	// no keys here, and its Metrics count only Admitted and Limited.
	Store bool
	// Metrics are the quota's counters.
	Metrics ratelimit.KeyedMetrics
	// Partitions has one entry per key the quota keeps a limiter for,
	// sorted by Method and Key.
	Partitions []RateLimitPartitionSnapshot
}

// RateLimitPartitionSnapshot is one key of a rate-limit quota. It is plain
// data.
type RateLimitPartitionSnapshot struct {
	// Method is the method, for a quota of a whole service (whose keys
	// are a method and a caller's key); empty otherwise.
	Method string
	// Key is the caller's key in its display form
	// ([RateLimit.DisplayKey]).
	Key string
	// Tokens is the permits the key has left now: Burst when unused.
	Tokens float64
}

// Snapshot returns the server's state now: see [ServerSnapshot]. It is
// safe to call concurrently with calls, which it neither blocks nor slows
// (it reads the partitions without their locks), and it creates no
// partition. The values are read one after the other while calls may
// change them.
func (s *Server) Snapshot() ServerSnapshot {
	return ServerSnapshot{
		Exempt:    slices.Clone(s.exemptList),
		Deadline:  s.deadline.cfg,
		Faults:    s.chaos.Faults(),
		Bulkhead:  s.bulkhead.snapshot(),
		RateLimit: s.rate.snapshot(),
	}
}

func (b *Bulkhead) snapshot() BulkheadSnapshot {
	if b.parts == nil {
		return BulkheadSnapshot{}
	}
	c := &b.cfg
	bs := BulkheadSnapshot{Enabled: true, PartitionBy: c.PartitionBy, Header: strings.ToLower(c.Header), Limit: c.Limit, Queue: c.Queue,
		MaxWait: c.MaxWait, Adaptive: c.Adaptive != nil, ShowKeys: c.ShowKeys, Shared: b.parts.Overflow().Metrics()}
	if c.PartitionBy != PartitionNone {
		bs.MaxPartitions = cmp.Or(c.MaxPartitions, DefaultMaxPartitions)
	}
	b.parts.Range(func(key string, p *bulkhead.Bulkhead) bool {
		bs.Partitions = append(bs.Partitions, PartitionSnapshot{Key: b.keys.show(key), Metrics: p.Metrics()})
		return true
	})
	slices.SortFunc(bs.Partitions, func(x, y PartitionSnapshot) int { return strings.Compare(x.Key, y.Key) })
	return bs
}

// DisplayKey returns a caller's key as the rate limit shows it in
// snapshots: a keyed hash such as "k:3f2a9c0e71b4", or the key itself
// with [RateLimitConfig.ShowKeys] or PartitionByMethod; "" stays "". See
// "Caller keys" in the package documentation. It is safe for concurrent
// use.
func (r *RateLimit) DisplayKey(key string) string { return r.keys.show(key) }

func (r *RateLimit) snapshot() RateLimitSnapshot {
	if !r.on {
		return RateLimitSnapshot{}
	}
	rs := RateLimitSnapshot{Enabled: true, PartitionBy: r.cfg.PartitionBy, Header: r.cfg.Header, ShowKeys: r.cfg.ShowKeys}
	for _, q := range r.all {
		qs := QuotaSnapshot{Name: q.name, Class: q.class, Rate: q.rate, Burst: q.burst, Store: q.keys == nil}
		if q.keys == nil {
			qs.Metrics = ratelimit.KeyedMetrics{Admitted: q.admitted.Load(), Limited: q.limited.Load()}
		} else {
			qs.Metrics = q.keys.Metrics()
			q.keys.Range(func(key string, tokens float64) bool {
				var method string
				if q.byMethod {
					method, key, _ = strings.Cut(key, "\x00")
				}
				qs.Partitions = append(qs.Partitions, RateLimitPartitionSnapshot{Method: method, Key: r.keys.show(key), Tokens: tokens})
				return true
			})
			slices.SortFunc(qs.Partitions, func(x, y RateLimitPartitionSnapshot) int {
				return cmp.Or(strings.Compare(x.Method, y.Method), strings.Compare(x.Key, y.Key))
			})
		}
		rs.Quotas = append(rs.Quotas, qs)
	}
	slices.SortFunc(rs.Quotas, func(x, y QuotaSnapshot) int { return strings.Compare(x.Name, y.Name) })
	return rs
}
