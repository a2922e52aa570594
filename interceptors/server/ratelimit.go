package server

import (
	"context"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	"github.com/engineeringlabs/grpc-resilience/ratelimit"
)

// RateQuota is the rate and burst of one quota. The zero RateQuota is no
// quota.
type RateQuota struct {
	// Rate is how many calls per second each key may make on average.
	// Zero means no limit. Negative values, NaN, infinities and values
	// above [ratelimit.MaxRate] are invalid.
	Rate float64
	// Burst is how many calls a key may make at one instant after a
	// quiet spell. The default, zero, is one second's worth, ceil(Rate),
	// at least 1. Must not be negative, and must be zero when Rate is.
	Burst int
}

// validate reports the bad fields of q ("Rate", "Burst").
func (q RateQuota) validate() error {
	var p problems
	switch {
	case math.IsNaN(q.Rate) || math.IsInf(q.Rate, 0) || q.Rate < 0:
		p.add("Rate", q.Rate, "must be a finite number of calls per second, at least 0")
	case q.Rate > ratelimit.MaxRate:
		p.add("Rate", q.Rate, "must be at most "+strconv.FormatFloat(ratelimit.MaxRate, 'g', -1, 64)+" calls per second")
	}
	switch {
	case q.Burst < 0:
		p.add("Burst", q.Burst, "must not be negative (0 means one second's worth)")
	case q.Burst > 0 && q.Rate == 0:
		p.add("Burst", q.Burst, "set but Rate is 0, which is no limit")
	}
	return p.err()
}

// RateLimitConfig configures the rate limit of a [Server]: quotas of calls
// per second, per caller key, decided by GCRA ([ratelimit.Keyed]). The zero
// value limits nothing.
//
// Rate and Burst are the default quota, for every method that Methods does
// not name; each key (see PartitionBy) has its own. A call over its quota
// is failed at once, before the bulkhead, with RESOURCE_EXHAUSTED carrying
// a google.rpc.RetryInfo detail whose delay is exactly the time until the
// caller's next permit, the same delay in the grpc-retry-pushback-ms trailer
// (rounded up to whole milliseconds), and a google.rpc.QuotaFailure detail
// whose Subject names the quota, such as "header:x-api-key", never the
// caller's key itself (caller keys may be secrets), and whose Description
// says the rate, such as "10 calls per second per x-api-key".
type RateLimitConfig struct {
	// Rate is how many calls per second each key may make on average,
	// for the methods that Methods does not name. Fractions are fine (0.5
	// is a call every two seconds). The default, zero, sets no default
	// quota: with Methods empty too, the rate limit is disabled and every
	// other field must then be zero. Negative values, NaN, infinities and
	// values above [ratelimit.MaxRate] are invalid.
	Rate float64
	// Burst is how many calls a key may make at one instant after a quiet
	// spell. The default, zero, is one second's worth, ceil(Rate), at
	// least 1. Must not be negative, and must be zero when Rate is.
	Burst int
	// PartitionBy says what a key is. The default, PartitionNone, is one
	// quota shared by every call; PartitionByMethod, one per method;
	// PartitionByHeader, one per value of Header (calls without it share
	// one); PartitionByPeer, one per peer IP address; PartitionByFunc, one
	// per key KeyFunc returns.
	PartitionBy Partition
	// Header is the request metadata key whose value is the key of
	// PartitionByHeader, such as "x-api-key". Required for
	// PartitionByHeader and must be empty otherwise. Metadata keys are
	// case-insensitive; it is matched in lower case. Calls without the
	// header, and calls whose value is longer than MaxHeaderKeyLength
	// bytes, share one quota.
	Header string
	// KeyFunc returns the key of a call for PartitionByFunc. It must be
	// safe for concurrent use and fast; it runs on every call that has a
	// quota. Required for PartitionByFunc and must be nil otherwise.
	KeyFunc func(ctx context.Context, fullMethod string) string
	// MaxPartitions caps the number of keys each quota (the default one
	// and each entry of Methods) keeps a limiter for, so that untrusted
	// keys cannot grow memory without bound. A new key beyond the cap
	// takes the place of a key that has been idle long enough for its
	// limiter to be full again, which changes no decision
	// ([EventRateLimitEvicted]); when every key is busy, it shares one
	// overflow limiter with the same Rate and Burst
	// ([EventRateLimitOverflow]). The default, zero, is
	// [DefaultMaxPartitions]. Must not be negative.
	MaxPartitions int
	// Methods overrides Rate and Burst for one method
	// ("/pkg.Service/Method") or for each method of a service
	// ("pkg.Service", or "/pkg.Service/"). A method entry wins over its
	// service's entry. Each key of PartitionBy then has a quota per
	// method: the key is the method and the caller's key. A zero RateQuota
	// exempts the method from the default quota. Keys of other forms are
	// invalid, and so are two keys for the same service.
	Methods map[string]RateQuota
	// NoPushback sends neither RetryInfo nor the trailer, only the
	// QuotaFailure: the client's default policy then does not retry
	// RESOURCE_EXHAUSTED. The default, false, sends both.
	NoPushback bool
	// Store, when set, decides the quotas in place of this process's own
	// limiters, so that every process of a fleet enforces one quota in all
	// (package redisfleet keeps them in Redis). New calls it once per
	// quota: with quota "" and the default Rate and Burst when Rate is
	// set, and with each key of Methods whose RateQuota sets a Rate, and
	// that RateQuota (Burst filled in with its default).
	// The stage then asks the returned store's Take for one permit per
	// call, with the caller's key (for a service entry of Methods, the
	// method and the caller's key joined by a NUL byte). A quota whose
	// Store returns nil keeps a local limiter. A store that cannot decide
	// (Take returns an error) admits the call, counted as admitted in
	// [RateLimit.Metrics], and the stage reports
	// [EventRateLimitStoreFailed]: a store that fails never takes the
	// service down with it. The stage gives Take the call's context and
	// no deadline of its own, so the store must bound the time it waits
	// (redisfleet waits a few milliseconds at most); and since telemetry
	// records the text of its errors, they must not carry the caller's
	// key. The default, nil, decides locally. MaxPartitions must then be
	// zero: the store bounds its own keys.
	Store func(quota string, q RateQuota) ratelimit.Store
	// ShowKeys shows the callers' keys as they are in [Server.Snapshot].
	// The default, false, shows each as a keyed hash, as
	// [BulkheadConfig.ShowKeys] says. Events, and the QuotaFailure sent
	// back to the caller, never carry a caller's key: they name the quota.
	ShowKeys bool
}

// enabled reports whether c sets any quota.
func (c RateLimitConfig) enabled() bool { return c.Rate != 0 || len(c.Methods) > 0 }

// Validate reports every field that is out of range or inconsistent with
// another, each as a *[resilience.FieldError] whose Field is the field's
// name ("Rate", "Header", "Methods[/pkg.Svc/M].Rate"), joined with
// [errors.Join], in the order of the fields and of the Methods keys. The
// zero value is valid.
func (c RateLimitConfig) Validate() error {
	var p problems
	p.nest("", RateQuota{Rate: c.Rate, Burst: c.Burst}.validate())
	p.partitioning(c.PartitionBy, c.Header, c.KeyFunc, c.MaxPartitions)
	checkMethods(&p, c.Methods, func(v RateQuota) error { return v.validate() })
	if !c.enabled() {
		const disabled = "set but Rate is 0 and Methods is empty, which disables the rate limit"
		if c.PartitionBy != PartitionNone && c.PartitionBy <= PartitionByPeer {
			p.add("PartitionBy", c.PartitionBy, disabled)
		}
		if c.MaxPartitions > 0 {
			p.add("MaxPartitions", c.MaxPartitions, disabled)
		}
		if c.NoPushback {
			p.add("NoPushback", c.NoPushback, disabled)
		}
		if c.Store != nil {
			p.add("Store", "func", disabled)
		}
		if c.ShowKeys {
			p.add("ShowKeys", c.ShowKeys, disabled)
		}
	}
	if c.Store != nil && c.MaxPartitions > 0 {
		p.add("MaxPartitions", c.MaxPartitions, "set but Store decides, and bounds its own keys")
	}
	return p.err()
}

// quota is one GCRA limiter per key, with the Rate and Burst of the
// default quota or of one entry of RateLimitConfig.Methods.
type quota struct {
	keys *ratelimit.Keyed
	// store decides in place of keys when RateLimitConfig.Store gave
	// one; nil otherwise.
	store ratelimit.Store
	// admitted and limited count the decisions of store.
	admitted, limited atomic.Uint64
	// byMethod: the quota is a service entry, whose keys are the method
	// and the caller's key.
	byMethod bool
	// subject is the QuotaFailure subject of a limited call; empty when
	// it names the call's method and is built for each rejection.
	subject string
	// class is the quota's class, the Key of its eviction and overflow
	// events.
	class string
	// desc is the QuotaFailure description.
	desc string
	// name, rate and burst are the quota as RateLimitConfig.Store is
	// told, for snapshots.
	name  string
	rate  float64
	burst int
}

// RateLimit is the rate-limit stage of a [Server]: it fails calls over
// their quota, as [RateLimitConfig] describes, with RESOURCE_EXHAUSTED, a
// google.rpc.RetryInfo and a google.rpc.QuotaFailure detail and a
// grpc-retry-pushback-ms trailer. On the server, the rejection also matches
// [resilience.ErrRateLimited], as a *[resilience.RateLimitedError] whose
// RetryAfter is the time until the caller's next permit.
//
// A RateLimit is safe for concurrent use. [Server.RateLimit] returns the
// one of a Server; the zero value is not usable.
type RateLimit struct {
	cfg    RateLimitConfig
	obs    Observer
	on     bool
	quotas byMethod[*quota] // nil: no quota; a method's nil entry exempts it
	all    []*quota
	// callerClass is how the caller's part of a key is named in a
	// subject: "" for PartitionNone and PartitionByMethod.
	callerClass string
	per         string // " per x-api-key", for descriptions
	// keys shows the callers' keys in snapshots.
	keys keyDisplay
}

// newRateLimit returns the RateLimit of a valid cfg.
func newRateLimit(cfg RateLimitConfig, obs Observer) *RateLimit {
	r := &RateLimit{cfg: cfg, obs: obs, on: cfg.enabled()}
	if !r.on {
		return r
	}
	r.cfg.Header = strings.ToLower(cfg.Header)
	switch cfg.PartitionBy {
	case PartitionByMethod:
		r.per = " per method"
	case PartitionByHeader:
		r.callerClass, r.per = "header:"+r.cfg.Header, " per "+r.cfg.Header
	case PartitionByPeer:
		r.callerClass, r.per = "peer", " per peer address"
	case PartitionByFunc:
		r.callerClass, r.per = "func", " per caller key"
	}
	if cfg.Rate > 0 {
		class := r.callerClass
		switch cfg.PartitionBy {
		case PartitionNone:
			class = "all"
		case PartitionByMethod:
			class = "method"
		}
		q := r.newQuota("", RateQuota{Rate: cfg.Rate, Burst: cfg.Burst}, class)
		if cfg.PartitionBy != PartitionByMethod {
			q.subject = class
		}
		r.quotas.def = q
	}
	for key, rq := range cfg.Methods {
		m, _ := methodPattern(key) // Validate accepted it
		service := strings.HasSuffix(m, "/")
		var q *quota
		if rq.Rate > 0 {
			if service {
				q = r.newQuota(key, rq, r.withCaller("service:"+strings.Trim(m, "/")))
				q.byMethod = true
			} else {
				q = r.newQuota(key, rq, r.withCaller("method:"+m))
				q.subject = q.class
			}
		}
		r.quotas.set(m, q)
	}
	return r
}

// subject returns the QuotaFailure subject of a call of fullMethod
// decided by q, which its events carry as their Key.
func (r *RateLimit) subject(q *quota, fullMethod string) string {
	if q.subject != "" {
		return q.subject
	}
	return r.withCaller("method:" + fullMethod)
}

// withCaller appends the caller's class to a method or service class.
func (r *RateLimit) withCaller(class string) string {
	if r.callerClass == "" {
		return class
	}
	return class + "," + r.callerClass
}

// newQuota builds the limiter of one quota, named as
// RateLimitConfig.Store is told, and adds it to r.all.
func (r *RateLimit) newQuota(name string, rq RateQuota, class string) *quota {
	q := &quota{class: class, desc: strconv.FormatFloat(rq.Rate, 'g', -1, 64) + " calls per second" + r.per,
		name: name, rate: rq.Rate, burst: rq.Burst}
	if q.burst == 0 {
		q.burst = max(1, int(math.Ceil(rq.Rate)))
	}
	r.all = append(r.all, q)
	if r.cfg.Store != nil {
		if rq.Burst == 0 {
			rq.Burst = max(1, int(math.Ceil(rq.Rate)))
		}
		if q.store = r.cfg.Store(name, rq); q.store != nil {
			return q
		}
	}
	kc := ratelimit.KeyedConfig{Rate: rq.Rate, Burst: rq.Burst, MaxKeys: r.cfg.MaxPartitions}
	if kc.MaxKeys == 0 {
		kc.MaxKeys = DefaultMaxPartitions
	}
	if obs := r.obs; obs.OnEvent != nil {
		kc.OnEvict = func(string) {
			obs.OnEvent(context.Background(), Event{Kind: EventRateLimitEvicted, Key: class})
		}
		kc.OnOverflow = func(string) {
			obs.OnEvent(context.Background(), Event{Kind: EventRateLimitOverflow, Key: class})
		}
	}
	q.keys = ratelimit.NewKeyed(kc)
	return q
}

// Metrics returns the counters of every quota's limiters, added up: the
// calls admitted and limited, the decisions made with an overflow
// limiter, the idle keys evicted and the keys kept. It is zero when the
// rate limit is disabled. The counters are read one after the other while
// calls may change them.
func (r *RateLimit) Metrics() ratelimit.KeyedMetrics {
	var m ratelimit.KeyedMetrics
	for _, q := range r.all {
		if q.keys == nil {
			m.Admitted += q.admitted.Load()
			m.Limited += q.limited.Load()
			continue
		}
		s := q.keys.Metrics()
		m.Admitted += s.Admitted
		m.Limited += s.Limited
		m.Overflowed += s.Overflowed
		m.Evicted += s.Evicted
		m.Keys += s.Keys
	}
	return m
}

// lookup returns the quota of fullMethod, or nil when it has none. It
// allocates nothing.
func (r *RateLimit) lookup(fullMethod string) *quota { return r.quotas.lookup(fullMethod) }

// callerKey returns the caller's part of the key of a call.
func (r *RateLimit) callerKey(ctx context.Context, fullMethod string) string {
	return partitionKey(ctx, fullMethod, r.cfg.PartitionBy, r.cfg.Header, r.cfg.KeyFunc)
}

// peerKey returns the IP address of the call's peer, without its port, or
// the peer's whole address when it is not an IP address and port; "" when
// the context has no peer.
func peerKey(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if a, ok := p.Addr.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap().WithZone(a.Zone).String()
		}
	}
	s := p.Addr.String()
	if host, _, err := net.SplitHostPort(s); err == nil {
		return host
	}
	return s
}

// admit takes a permit of the call's quota, or returns the rejection and
// the pushback trailer to set (nil without pushback).
func (r *RateLimit) admit(ctx context.Context, fullMethod string) (metadata.MD, error) {
	q := r.lookup(fullMethod)
	if q == nil {
		return nil, nil
	}
	key := r.callerKey(ctx, fullMethod)
	if q.byMethod {
		key = fullMethod + "\x00" + key
	}
	var (
		d   ratelimit.Decision
		err error
	)
	if q.store == nil {
		d, _ = q.keys.Take(ctx, key, 1) // a Keyed always decides
	} else if d, err = q.store.Take(ctx, key, 1); err != nil {
		q.admitted.Add(1)
		r.obs.emit(ctx, Event{Kind: EventRateLimitStoreFailed, FullMethod: fullMethod, Key: r.subject(q, fullMethod), Err: err})
		return nil, nil
	} else if d.Allowed {
		q.admitted.Add(1)
	} else {
		q.limited.Add(1)
	}
	if d.Allowed {
		return nil, nil
	}
	subject := r.subject(q, fullMethod)
	st := status.New(codes.ResourceExhausted, "server: rate limit of "+subject+" exceeded")
	details := make([]protoadapt.MessageV1, 0, 2)
	var trailer metadata.MD
	if !r.cfg.NoPushback && d.RetryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(d.RetryAfter)})
		trailer = metadata.Pairs(classify.PushbackTrailer, strconv.FormatInt(pushbackMillis(d.RetryAfter), 10))
	}
	details = append(details, &errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: subject, Description: q.desc}}})
	// WithDetails fails only for a status with code OK.
	if withDetails, err := st.WithDetails(details...); err == nil {
		st = withDetails
	}
	r.obs.emit(ctx, Event{Kind: EventRateLimited, FullMethod: fullMethod, Code: codes.ResourceExhausted, Key: subject, Delay: d.RetryAfter})
	return trailer, interceptors.NewStatusError(st, &resilience.RateLimitedError{RetryAfter: d.RetryAfter})
}
