package console

import "time"

// Snapshot is what the page shows, and what GET snapshot.json returns: every
// registered pipeline with its rows, the latest events and the latest
// retried calls. It is plain data; the JSON names are the ones below.
//
// Lists are sorted so that trouble comes first: pipelines and rows by
// Trouble (highest first), then by name. Every name in it is at most
// [MaxNameLen] bytes (longer ones are cut at a character boundary and end
// with "…"); every list is bounded by the Config.
type Snapshot struct {
	// Time is when the console sampled the pipelines.
	Time time.Time `json:"time"`
	// Title is Config.Title.
	Title string `json:"title"`
	// IntervalMS is Config.Interval in milliseconds: the time between two
	// samples, and the step of the histories.
	IntervalMS int64 `json:"interval_ms"`
	// Pipelines are the registered clients and servers.
	Pipelines []Pipeline `json:"pipelines"`
	// Events are the latest events, newest first, at most
	// Config.MaxEvents.
	Events []Event `json:"events"`
	// Retried are the latest calls that made more than one attempt,
	// newest first, at most Config.MaxRetried.
	Retried []RetriedCall `json:"retried"`
}

// Pipeline is one registered client or server.
type Pipeline struct {
	// Name is the name it was registered with.
	Name string `json:"name"`
	// Kind is "client" or "server".
	Kind string `json:"kind"`
	// Trouble is the highest Trouble of its rows.
	Trouble int `json:"trouble"`
	// Rows are its breakers, bulkheads, partitions and limits, trouble
	// first, at most Config.MaxRows, and the RowOther row when there is
	// one.
	Rows []Row `json:"rows"`
	// Hidden is how many rows were left out to respect Config.MaxRows.
	Hidden int `json:"hidden"`
	// Counters are the pipeline's event counts: a total since
	// registration and a rate over the last interval, one per event kind
	// seen.
	Counters []Counter `json:"counters"`
	// Budgets are a client's retry budgets, one per target.
	Budgets []Budget `json:"budgets,omitempty"`
	// Server describes a server's settings in force; nil for a client.
	Server *ServerSettings `json:"server,omitempty"`
}

// Trouble levels of a Row and a Pipeline.
const (
	// TroubleNone: nothing is refused or failing.
	TroubleNone = 0
	// TroubleFailing: some calls fail (a breaker window with failures) or
	// retry.
	TroubleFailing = 1
	// TroubleLimited: calls are being rate limited or shed.
	TroubleLimited = 2
	// TroubleHalfOpen: a breaker is half-open, probing.
	TroubleHalfOpen = 3
	// TroubleOpen: a breaker is open, or forced open.
	TroubleOpen = 4
)

// Row kinds.
const (
	// RowMethod is a client's (target, method) state, or a server method
	// some event concerned.
	RowMethod = "method"
	// RowPartition is a server bulkhead partition (or its shared
	// partition, with an empty Key).
	RowPartition = "partition"
	// RowQuota is a server rate-limit quota.
	RowQuota = "quota"
	// RowOther counts together the events of the (target and) methods
	// the console had no room to count on rows of their own: it keeps
	// the counters of at most four times Config.MaxRows rows per
	// pipeline. It appears once such an event was counted, and is shown
	// besides the Config.MaxRows others.
	RowOther = "other"
)

// Row is one line of a pipeline: a client's (target, method), a server's
// bulkhead partition, rate-limit quota, or method, or the events of the
// methods past the console's cap (RowOther).
type Row struct {
	// ID identifies the row within its pipeline across snapshots.
	ID string `json:"id"`
	// Kind is RowMethod, RowPartition, RowQuota or RowOther.
	Kind string `json:"kind"`
	// Target and Method name a client's state; Method alone a server
	// method.
	Target string `json:"target,omitempty"`
	Method string `json:"method,omitempty"`
	// Key is a partition's or quota's display key (a caller key is a
	// short keyed hash unless the server shows keys), or a quota's class.
	Key string `json:"key,omitempty"`
	// Trouble is one of the Trouble constants.
	Trouble int `json:"trouble"`

	Breaker   *Breaker   `json:"breaker,omitempty"`
	Bulkhead  *Bulkhead  `json:"bulkhead,omitempty"`
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	Throttle  *Throttle  `json:"throttle,omitempty"`
	Retry     *Retry     `json:"retry,omitempty"`
	// ServerCounts holds what a server did to a method's calls.
	ServerCounts *ServerCounts `json:"server_counts,omitempty"`

	// History is the row's recent samples, oldest first, at most
	// Config.History; present in snapshot.json and in the first message
	// of the event stream, left out of the later messages (each carries
	// the newest sample in Last).
	History *History `json:"history,omitempty"`
	// Last is the newest sample.
	Last Sample `json:"last"`

	hist *ring[point] // the console's history of the row, under histMu
}

// Throttle is a client's adaptive throttle as a row shows it.
type Throttle struct {
	// Probability is the chance that the throttle refuses the next
	// attempt, in [0, 1).
	Probability float64 `json:"probability"`
	// RejectedPerSec counts the attempts it refused.
	RejectedPerSec float64 `json:"rejected_per_sec"`
	// Requests and Accepts are the counts of its window.
	Requests uint64 `json:"requests"`
	Accepts  uint64 `json:"accepts"`
	// K is the multiplier of accepts (requests above K x accepts are
	// refused).
	K float64 `json:"k"`
}

// Breaker is a breaker's state as a row shows it.
type Breaker struct {
	// Key is the breaker's scope key (shared by the rows of a service or
	// target scope).
	Key string `json:"key"`
	// Scope is "method", "service" or "target".
	Scope string `json:"scope"`
	// State is "closed", "open" or "half-open"; Mode is "auto",
	// "forced-open", "forced-closed" or "disabled".
	State string `json:"state"`
	Mode  string `json:"mode"`
	// InStateMS is how long it has been in State, in milliseconds;
	// InStateAtLeast reports that the state predates the console, so it
	// has been longer.
	InStateMS      int64 `json:"in_state_ms"`
	InStateAtLeast bool  `json:"in_state_at_least,omitempty"`
	// Transitions counts its state changes since it was created.
	Transitions uint64 `json:"transitions"`
	// WindowCalls, FailureRate and SlowCallRate describe its window
	// (rates in percent).
	WindowCalls  int64   `json:"window_calls"`
	FailureRate  float64 `json:"failure_rate"`
	SlowCallRate float64 `json:"slow_call_rate"`
	// FailureRateThreshold and SlowCallRateThreshold are the rates that
	// open it; zero when unset.
	FailureRateThreshold  float64 `json:"failure_rate_threshold,omitempty"`
	SlowCallRateThreshold float64 `json:"slow_call_rate_threshold,omitempty"`
	// RejectedPerSec is the rate of calls it refused over the last
	// interval.
	RejectedPerSec float64 `json:"rejected_per_sec"`
}

// Bulkhead is a bulkhead's or partition's state.
type Bulkhead struct {
	// InFlight, Waiting and Limit are the executions running, queued,
	// and allowed at once now (the adaptive limit when Adaptive).
	InFlight int `json:"in_flight"`
	Waiting  int `json:"waiting"`
	Limit    int `json:"limit"`
	// ConfiguredLimit is the limit of the configuration; it differs from
	// Limit when an adaptive strategy moved it.
	ConfiguredLimit int  `json:"configured_limit"`
	Adaptive        bool `json:"adaptive,omitempty"`
	// RejectedPerSec is the rate of calls it refused (shed) over the last
	// interval.
	RejectedPerSec float64 `json:"rejected_per_sec"`
}

// RateLimit is a rate limit's state.
type RateLimit struct {
	// Rate and Burst are the configured permits per second and burst.
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
	// Tokens are the permits left now; -1 when unknown (a quota kept in a
	// shared store).
	Tokens float64 `json:"tokens"`
	// AdmittedPerSec and LimitedPerSec are rates over the last interval;
	// AdmittedPerSec is -1 when unknown.
	AdmittedPerSec float64 `json:"admitted_per_sec"`
	LimitedPerSec  float64 `json:"limited_per_sec"`
	// Keys is how many caller keys have a limiter of their own.
	Keys int `json:"keys,omitempty"`
}

// Retry is what a client's (target, method) retried, as rates over the
// last interval.
type Retry struct {
	Pattern     string `json:"pattern"`
	MaxAttempts int    `json:"max_attempts"`
	// RetriesPerSec counts retries and hedges.
	RetriesPerSec float64 `json:"retries_per_sec"`
	// DeniedPerSec counts retries the budget refused; ExhaustedPerSec
	// calls that used every attempt; FallbackPerSec calls the fallback
	// answered.
	DeniedPerSec    float64 `json:"denied_per_sec"`
	ExhaustedPerSec float64 `json:"exhausted_per_sec"`
	FallbackPerSec  float64 `json:"fallback_per_sec"`
	// BudgetLeft is how many retries the budget would grant now; -1 when
	// the budget does not say or there is none.
	BudgetLeft int `json:"budget_left"`
	// PushbackPerSec counts the retries whose wait the server asked for
	// (gRPC's pushback or a RetryInfo), and PushbackWaitMS is their mean
	// wait over the interval, in milliseconds; 0 without any.
	PushbackPerSec float64 `json:"pushback_per_sec"`
	PushbackWaitMS float64 `json:"pushback_wait_ms"`
}

// pushback fills PushbackPerSec and PushbackWaitMS from two readings of a
// row's counts taken elapsed apart.
func (r *Retry) pushback(prev, cur countSet, elapsed time.Duration) {
	r.PushbackPerSec = rate(prev.pushbacks, cur.pushbacks, elapsed)
	if n := cur.pushbacks - prev.pushbacks; cur.pushbacks > prev.pushbacks && cur.pushbackWaitUS >= prev.pushbackWaitUS {
		r.PushbackWaitMS = float64(cur.pushbackWaitUS-prev.pushbackWaitUS) / float64(n) / 1000
	}
}

// ServerCounts is what a server did to one method's calls, as rates over
// the last interval.
type ServerCounts struct {
	ShedPerSec             float64 `json:"shed_per_sec"`
	DeadlineRejectedPerSec float64 `json:"deadline_rejected_per_sec"`
	RateLimitedPerSec      float64 `json:"rate_limited_per_sec"`
	FaultsPerSec           float64 `json:"faults_per_sec"`
}

// Sample is one point of a row's history.
type Sample struct {
	// TimeMS is the sample's time in Unix milliseconds.
	TimeMS int64 `json:"t"`
	// Failing is the breaker's failure rate in percent.
	Failing float64 `json:"failing"`
	// InFlight is the bulkhead's executions at once.
	InFlight float64 `json:"in_flight"`
	// Refused is the rate of calls refused by the breaker, the throttle,
	// the bulkhead or the rate limit (shed, limited), per second.
	Refused float64 `json:"refused"`
	// Retries is the rate of retries (client) or injected faults and
	// deadline rejections (server), per second.
	Retries float64 `json:"retries"`
}

// History is a row's samples, oldest first, as one array per series.
type History struct {
	TimeMS   []int64   `json:"t"`
	Failing  []float32 `json:"failing"`
	InFlight []float32 `json:"in_flight"`
	Refused  []float32 `json:"refused"`
	Retries  []float32 `json:"retries"`
}

// Counter is the count of one kind of event of a pipeline.
type Counter struct {
	// Kind is the event kind's name, as its String method spells it.
	Kind string `json:"kind"`
	// Total counts the events since the pipeline was registered.
	Total uint64 `json:"total"`
	// PerSec is the rate over the last interval.
	PerSec float64 `json:"per_sec"`
}

// Budget is a client's retry budget for one target.
type Budget struct {
	Target string `json:"target"`
	Type   string `json:"type"`
	// Available is how many retries it would grant now; -1 when the budget
	// does not say.
	Available int `json:"available"`
}

// ServerSettings are a server's settings in force.
type ServerSettings struct {
	// Faults describe the chaos faults in effect, one line each; empty
	// when none.
	Faults []string `json:"faults"`
	// Deadline describes the deadline checks.
	Deadline string `json:"deadline"`
	// Bulkhead and RateLimit describe the partitioning and limits.
	Bulkhead  string `json:"bulkhead"`
	RateLimit string `json:"rate_limit"`
}

// Event is one entry of the event list. Frequent kinds (retries, sheds,
// rejections) are merged into one entry per kind and Config.Interval,
// with Count.
type Event struct {
	Time     time.Time `json:"time"`
	Pipeline string    `json:"pipeline"`
	// Kind is the event kind's name, such as "breaker-state-change" or
	// "shed".
	Kind string `json:"kind"`
	// Text says what happened, for example "closed → open (failure rate)".
	Text string `json:"text"`
	// Target, Method and Key say where, when known.
	Target string `json:"target,omitempty"`
	Method string `json:"method,omitempty"`
	Key    string `json:"key,omitempty"`
	// Count is how many events the entry stands for.
	Count uint64 `json:"count"`
	// Trouble is the Trouble level the event signals.
	Trouble int `json:"trouble"`
}

// RetriedCall is a call that made more than one attempt.
type RetriedCall struct {
	Time     time.Time `json:"time"`
	Pipeline string    `json:"pipeline"`
	Target   string    `json:"target"`
	Method   string    `json:"method"`
	// Attempts is how many attempts reached the server.
	Attempts int `json:"attempts"`
	// Code is the call's final status code, such as "OK".
	Code string `json:"code"`
	// Fallback reports that the fallback answered.
	Fallback bool `json:"fallback,omitempty"`
	// Steps are the failed attempts and the wait after each, when the
	// console could follow the call: it tells calls apart by the span in
	// their context, so it follows each call that has a span of its own
	// (as the client observer of package telemetry gives every call).
	// Calls without a span of their own share their caller's; when two
	// of those overlap and retry, their attempts cannot be told apart and
	// the console shows no steps rather than mixed ones.
	Steps []Step `json:"steps,omitempty"`
	// TraceID is the call's trace id in hex, when it had a span;
	// TraceURL links to it when Config.TraceURL is set.
	TraceID  string `json:"trace_id,omitempty"`
	TraceURL string `json:"trace_url,omitempty"`
}

// Step is a failed attempt of a retried call.
type Step struct {
	Attempt int    `json:"attempt"`
	Code    string `json:"code"`
	// WaitMS is the wait before the next attempt, in milliseconds.
	WaitMS float64 `json:"wait_ms"`
	// Kind is "retry", "hedge" or why the call stopped ("retries-exhausted",
	// "budget-denied", "deadline").
	Kind string `json:"kind"`
}
