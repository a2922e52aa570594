package config

import (
	"fmt"
	"strconv"
	"strings"

	resilience "github.com/engineeringlabs/grpc-resilience"
	configv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/config/v1"
)

// The Go types check their own values (interceptors.Policy.Validate,
// server.Config.Validate) and report each problem as a
// *resilience.FieldError whose Field is a Go path. The tables below give
// the file's path of each Go path; indexes and map keys are written "[]"
// in both and carried over in order.

// fileField is the file's path of a Go field, and the message of its
// problems when the Go type's reason would not read well in a file.
type fileField struct {
	path string
	msg  string
}

// policyFields maps the Go paths of interceptors.Policy.Validate to the
// paths of a method_policies entry.
var policyFields = map[string]fileField{
	"Hedging":                        {path: "hedging", msg: "set together with retry; they are alternatives per method (gRFC A6), set one"},
	"Retry":                          {path: "retry"},
	"Retry.MaxAttempts":              {path: "retry.max_attempts"},
	"Retry.Backoff":                  {path: "retry.backoff"},
	"Retry.Backoff.Kind":             {path: "retry.backoff.kind"},
	"Retry.Backoff.Initial":          {path: "retry.backoff.initial"},
	"Retry.Backoff.Max":              {path: "retry.backoff.max"},
	"Retry.Backoff.Multiplier":       {path: "retry.backoff.multiplier"},
	"Retry.Backoff.Step":             {path: "retry.backoff.step"},
	"Retry.Jitter":                   {path: "retry.jitter"},
	"Retry.JitterFactor":             {path: "retry.jitter_factor"},
	"Retry.AttemptTimeout":           {path: "retry.attempt_timeout"},
	"Retry.Budget":                   {path: "retry.budget"},
	"Retry.Table":                    {path: "retry.code_rules"},
	"Hedging.MaxExtraAttempts":       {path: "hedging.max_extra_attempts"},
	"Hedging.Delay":                  {path: "hedging.delay"},
	"Hedging.Percentile":             {path: "hedging.percentile"},
	"Hedging.MinSamples":             {path: "hedging.min_samples"},
	"Hedging.NonFatalCodes":          {path: "hedging.non_fatal_codes"},
	"Hedging.NonFatalCodes[]":        {path: "hedging.non_fatal_codes[]"},
	"Hedging.Budget":                 {path: "hedging.budget"},
	"Breaker":                        {path: "breaker"},
	"Breaker.FailureThreshold":       {path: "breaker.failure_threshold"},
	"Breaker.OpenDuration":           {path: "breaker.open_duration"},
	"Breaker.MaxOpenDuration":        {path: "breaker.open_backoff.max"},
	"Breaker.OpenDurationMultiplier": {path: "breaker.open_backoff.multiplier"},
	"Breaker.SuccessThreshold":       {path: "breaker.success_threshold"},
	"Breaker.MaxHalfOpenProbes":      {path: "breaker.max_half_open_probes"},
	"Breaker.WindowType":             {path: "breaker.window_type"},
	"Breaker.WindowSize":             {path: "breaker.window_size"},
	"Breaker.WindowPeriod":           {path: "breaker.window_period"},
	"Breaker.WindowBuckets":          {path: "breaker.window_buckets"},
	"Breaker.FailureRateThreshold":   {path: "breaker.failure_rate_threshold"},
	"Breaker.SlowCallRateThreshold":  {path: "breaker.slow_call_rate_threshold"},
	"Breaker.SlowCallDuration":       {path: "breaker.slow_call_duration"},
	"Breaker.MinimumCalls":           {path: "breaker.minimum_calls"},
	"Breaker.Scope":                  {path: "breaker.scope"},
	"Breaker.Table":                  {path: "breaker.code_outcomes"},
	"Bulkhead":                       {path: "bulkhead"},
	"Bulkhead.Limit":                 {path: "bulkhead.limit"},
	"Bulkhead.Queue":                 {path: "bulkhead.queue"},
	"Bulkhead.MaxWait":               {path: "bulkhead.max_wait"},
	"Bulkhead.Scope":                 {path: "bulkhead.scope"},
	"RateLimit":                      {path: "rate_limit"},
	"RateLimit.Rate":                 {path: "rate_limit.rate"},
	"RateLimit.Burst":                {path: "rate_limit.burst"},
	"RateLimit.Wait":                 {path: "rate_limit.wait"},
	"RateLimit.Scope":                {path: "rate_limit.scope"},
	"Throttle":                       {path: "throttle"},
	"Throttle.K":                     {path: "throttle.k"},
	"Throttle.Window":                {path: "throttle.window"},
	"Throttle.Buckets":               {path: "throttle.buckets"},
	"Throttle.MinRequests":           {path: "throttle.min_requests"},
	"Throttle.PassInterval":          {path: "throttle.pass_interval"},
	"Throttle.Scope":                 {path: "throttle.scope"},
	"Throttle.Table":                 {path: "throttle.code_outcomes"},
	"DefaultTimeout":                 {path: "timeout"},
	"Idempotency":                    {path: "idempotency"},
}

// serverFields maps the Go paths of server.Config.Validate to the paths of
// the server section.
var serverFields = map[string]fileField{
	"Exempt":                  {path: "exempt"},
	"Exempt[]":                {path: "exempt[]"},
	"Deadline":                {path: "deadline"},
	"Deadline.MinRemaining":   {path: "deadline.min_remaining"},
	"Deadline.Default":        {path: "deadline.default"},
	"Bulkhead":                {path: "bulkhead"},
	"Bulkhead.Limit":          {path: "bulkhead.limit"},
	"Bulkhead.MaxPartitions":  {path: "bulkhead.max_partitions"},
	"Bulkhead.Queue":          {path: "bulkhead.queue"},
	"Bulkhead.MaxWait":        {path: "bulkhead.max_wait"},
	"Bulkhead.PushbackDelay":  {path: "bulkhead.pushback_delay"},
	"Bulkhead.NoPushback":     {path: "bulkhead.no_pushback"},
	"Bulkhead.PartitionBy":    {path: "bulkhead.partition_by"},
	"Bulkhead.Header":         {path: "bulkhead.header"},
	"Bulkhead.Adaptive":       {path: "bulkhead.adaptive"},
	"Chaos":                   {path: "chaos"},
	"Chaos.Seed":              {path: "chaos.seed"},
	"Chaos.Faults":            {path: "chaos"},
	"Chaos.Faults.All":        {path: "chaos.all"},
	"Chaos.Faults.Methods":    {path: "chaos.methods"},
	"Chaos.Faults.Methods[]":  {path: "chaos.methods[]"},
	"Chaos.Faults.All.":       {path: "chaos.all."},
	"Chaos.Faults.Methods[].": {path: "chaos.methods[]."},
	"RateLimit":               {path: "rate_limit"},
	"RateLimit.":              {path: "rate_limit."},
}

// rateLimitFields maps the Go paths of server.RateLimitConfig.Validate to
// the paths of the server section's rate_limit; serverFields has them
// under "RateLimit.".
var rateLimitFields = map[string]fileField{
	"Rate":            {path: "rate"},
	"Burst":           {path: "burst"},
	"PartitionBy":     {path: "partition_by"},
	"Header":          {path: "header"},
	"MaxPartitions":   {path: "max_partitions"},
	"Methods":         {path: "methods"},
	"Methods[]":       {path: "methods[]"},
	"Methods[].Rate":  {path: "methods[].rate"},
	"Methods[].Burst": {path: "methods[].burst"},
	"NoPushback":      {path: "no_pushback"},
}

// faultFields are the fields of a server.Fault, which serverFields maps
// under "Chaos.Faults.All." and "Chaos.Faults.Methods[].".
var faultFields = map[string]string{
	"ErrorRate": "error_rate", "Code": "code", "Pushback": "pushback",
	"Latency": "latency", "LatencyMax": "latency_max", "TailRate": "tail_rate",
	"TailLatency": "tail_latency", "AbortRate": "abort_rate", "AbortAfter": "abort_after",
}

func init() {
	for _, prefix := range []string{"Chaos.Faults.All.", "Chaos.Faults.Methods[]."} {
		for g, f := range faultFields {
			serverFields[prefix+g] = fileField{path: serverFields[prefix].path + f}
		}
		delete(serverFields, prefix)
	}
	for g, f := range rateLimitFields {
		serverFields["RateLimit."+g] = fileField{path: serverFields["RateLimit."].path + f.path}
	}
	delete(serverFields, "RateLimit.")
}

// goPolicy runs interceptors.Policy.Validate on the converted policy of a
// method_policies entry at path and reports what it finds under the
// file's paths. kind is the entry's backoff kind: the Go type's
// Backoff.Initial is the file's delay for a constant backoff.
func (c *conv) goPolicy(path string, p interface{ Validate() error }, kind configv1.BackoffKind) {
	var rename map[string]fileField
	if kind == configv1.BackoffKind_BACKOFF_KIND_CONSTANT {
		rename = map[string]fileField{"Retry.Backoff.Initial": {path: "retry.backoff.delay"}}
	}
	c.goProblems(path, p.Validate(), policyFields, rename)
}

// goProblems reports the *resilience.FieldErrors of err under path, their
// Go paths translated by table (override first). A problem at a path that
// has one already is the Go type's view of a value the schema's own checks
// reported, and is left out. Errors other than FieldErrors are reported
// at path as they are.
func (c *conv) goProblems(path string, err error, table, override map[string]fileField) {
	if err == nil {
		return
	}
	fes := resilience.FieldErrors(err)
	if len(fes) == 0 {
		c.ps.addMsg(path, err.Error())
		return
	}
	for _, fe := range fes {
		fp, msg, rest := translate(fe.Field, table, override)
		if fp = join(path, fp); fp == path+"." {
			fp = path
		}
		if c.ps.has(fp) {
			continue
		}
		if msg == "" {
			msg = clip(valueText(fe.Value)) + ", " + renameGoFields(fe.Reason, table)
		}
		if rest != "" {
			msg = rest + ": " + msg
		}
		c.ps.addMsg(fp, msg)
	}
}

// translate returns the file's path of the Go path field and the message
// its table entry gives, if any. A Go path the table lacks is reported at
// its longest prefix the table has; rest then names the remainder in Go
// terms.
func translate(field string, table, override map[string]fileField) (path, msg, rest string) {
	norm, keys := splitKeys(field)
	lookup := func(k string) (fileField, bool) {
		if f, ok := override[k]; ok {
			return f, true
		}
		f, ok := table[k]
		return f, ok
	}
	f, ok := lookup(norm)
	for cut := norm; !ok; {
		i := strings.LastIndexAny(cut, ".[")
		if i <= 0 {
			return "", "", field
		}
		cut = cut[:i]
		if f, ok = lookup(cut); ok {
			n := strings.Count(f.path, "[]")
			rest = strings.TrimPrefix(fillKeys(norm[i:], keys[min(n, len(keys)):]), ".")
			return fillKeys(f.path, keys), "", rest
		}
	}
	return fillKeys(f.path, keys), f.msg, ""
}

// splitKeys replaces each bracketed index or key of a Go path by "[]" and
// returns the contents of the brackets in order.
func splitKeys(field string) (norm string, keys []string) {
	var b strings.Builder
	for {
		i := strings.IndexByte(field, '[')
		if i < 0 {
			b.WriteString(field)
			return b.String(), keys
		}
		j := strings.IndexByte(field[i:], ']')
		if j < 0 {
			b.WriteString(field)
			return b.String(), keys
		}
		b.WriteString(field[:i])
		b.WriteString("[]")
		keys = append(keys, field[i+1:i+j])
		field = field[i+j+1:]
	}
}

// fillKeys puts keys into the "[]" of path in order: indexes as [2], map
// keys quoted as the file's paths quote them.
func fillKeys(path string, keys []string) string {
	var b strings.Builder
	for {
		i := strings.Index(path, "[]")
		if i < 0 || len(keys) == 0 {
			b.WriteString(path)
			return b.String()
		}
		b.WriteString(path[:i])
		if _, err := strconv.Atoi(keys[0]); err == nil {
			b.WriteString("[" + keys[0] + "]")
		} else {
			b.WriteString(key("", keys[0]))
		}
		path, keys = path[i+2:], keys[1:]
	}
}

// valueText prints a FieldError's value as problems do: strings quoted.
func valueText(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// renameGoFields replaces the Go field names a reason may mention ("must
// not be below Initial") by the file's names, where table gives every Go
// field of that name the same file name. It changes words for display
// only: paths come from FieldError.Field alone.
func renameGoFields(reason string, table map[string]fileField) string {
	if !strings.ContainsFunc(reason, func(r rune) bool { return r >= 'A' && r <= 'Z' }) {
		return reason
	}
	names := map[string]string{} // last Go segment -> last file segment, "" when ambiguous
	for g, f := range table {
		if f.msg != "" || strings.HasSuffix(g, "]") {
			continue
		}
		gl := g[strings.LastIndexByte(g, '.')+1:]
		fl := f.path[strings.LastIndexByte(f.path, '.')+1:]
		if prev, seen := names[gl]; seen && prev != fl {
			fl = ""
		}
		names[gl] = fl
	}
	words := strings.Fields(reason)
	for i, w := range words {
		core := strings.TrimRight(w, ",.;:)")
		if f := names[core]; f != "" {
			words[i] = f + w[len(core):]
		}
	}
	return strings.Join(words, " ")
}
