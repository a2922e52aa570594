package config

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	configv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/config/v1"
)

// grpcMaxAttempts is the limit gRPC clamps retry and hedging attempts to.
const grpcMaxAttempts = 5

// ImportServiceConfig converts a gRPC service config (gRFC A2, A6), the
// JSON given to grpc.WithDefaultServiceConfig or served by the resolver,
// into a Config: each methodConfig becomes a method policy with the same
// names; its retryPolicy, hedgingPolicy and timeout become retry, hedging
// and timeout; retryThrottling becomes the target budget. The package
// documentation says where the semantics differ.
//
// Problems name the service config's own fields, such as
// "methodConfig[0].retryPolicy.maxAttempts: 1, must be at least 2". Fields
// unrelated to resilience (loadBalancingConfig, waitForReady, message size
// limits, ...) are accepted and ignored, each with a note in
// [Config.Notes]; other unknown fields are errors.
func ImportServiceConfig(data []byte) (*Config, error) {
	return importServiceConfig("", data)
}

// scImport holds the state of one import.
type scImport struct {
	ps    problems
	notes []string
}

func importServiceConfig(source string, data []byte) (*Config, error) {
	var im scImport
	root, err := parseJSON(data)
	if err != nil {
		im.ps.addMsg("", err.Error())
		return nil, im.ps.err(source)
	}
	msg := im.config(root)
	if err := im.ps.err(source); err != nil {
		return nil, err
	}
	cfg, err := build(source, msg, im.notes)
	if err != nil {
		// The import checks what gRPC checks; our schema checks more (a
		// backoff multiplier of at least 1, for instance). Say which.
		if e, ok := err.(*Error); ok {
			for i := range e.Problems {
				e.Problems[i].Message += " (in the imported configuration)"
			}
		}
		return nil, err
	}
	return cfg, nil
}

// fields returns the fields of the object n, keyed by their camelCase
// name; both camelCase and snake_case spellings are accepted, as in proto3
// JSON. Unknown and repeated fields are problems.
func (im *scImport) fields(n *node, path string, known ...string) map[string]*node {
	if n.kind != 'o' {
		if path == "" {
			im.ps.addMsg("", fmt.Sprintf("the document is %s, must be an object", n.kindName()))
		} else {
			im.ps.add(path, n.kindName(), "must be an object")
		}
		return nil
	}
	out := make(map[string]*node, len(n.keys))
	for i, k := range n.keys {
		name := ""
		for _, c := range known {
			if k == c || k == snake(c) {
				name = c
				break
			}
		}
		if name == "" {
			im.ps.addMsg(joinKey(path, k), "unknown field")
			continue
		}
		if _, dup := out[name]; dup {
			im.ps.addMsg(join(path, k), "set twice")
			continue
		}
		if n.vals[i].kind != 'z' {
			out[name] = n.vals[i]
		}
	}
	return out
}

// snake returns the snake_case spelling of a camelCase name.
func snake(camel string) string {
	var b strings.Builder
	for _, r := range camel {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (im *scImport) note(path, what string) {
	im.notes = append(im.notes, path+": "+what)
}

func (im *scImport) config(root *node) *configv1.Config {
	f := im.fields(root, "", "methodConfig", "retryThrottling", "loadBalancingPolicy", "loadBalancingConfig", "healthCheckConfig")
	msg := &configv1.Config{
		// gRPC does not budget retries without retryThrottling.
		TargetBudget: &configv1.Budget{Kind: configv1.BudgetKind_BUDGET_KIND_NONE},
	}
	for _, k := range []string{"loadBalancingPolicy", "loadBalancingConfig", "healthCheckConfig"} {
		if f[k] != nil {
			im.note(k, "ignored: not a resilience setting; keep it in the service config")
		}
	}
	if rt := f["retryThrottling"]; rt != nil {
		msg.TargetBudget = im.throttling(rt, "retryThrottling")
	}
	if mc := f["methodConfig"]; mc != nil {
		if mc.kind != 'a' {
			im.ps.add("methodConfig", mc.kindName(), "must be an array")
			return msg
		}
		seen := map[string]string{}
		for i, e := range mc.vals {
			if mp := im.methodConfig(e, index("methodConfig", i), seen); mp != nil {
				msg.MethodPolicies = append(msg.MethodPolicies, mp)
			}
		}
	}
	return msg
}

func (im *scImport) throttling(n *node, path string) *configv1.Budget {
	f := im.fields(n, path, "maxTokens", "tokenRatio")
	b := &configv1.Budget{Kind: configv1.BudgetKind_BUDGET_KIND_TOKEN_BUCKET}
	if f == nil {
		return b
	}
	mt, ok := im.number(f["maxTokens"], join(path, "maxTokens"))
	switch {
	case !ok:
	case !(mt > 0):
		im.ps.add(join(path, "maxTokens"), mt, "must be above 0")
	case mt > 1000:
		im.note(join(path, "maxTokens"), fmt.Sprintf("%v clamped to 1000, as gRPC does", mt))
		mt = 1000
	}
	tr, ok := im.number(f["tokenRatio"], join(path, "tokenRatio"))
	switch {
	case !ok:
	case !(tr > 0):
		im.ps.add(join(path, "tokenRatio"), tr, "must be above 0")
	case tr > 1000:
		im.note(join(path, "tokenRatio"), fmt.Sprintf("%v clamped to 1000", tr))
		tr = 1000
	}
	b.MaxTokens, b.TokenRatio = mt, tr
	return b
}

func (im *scImport) methodConfig(n *node, path string, seen map[string]string) *configv1.MethodPolicy {
	f := im.fields(n, path, "name", "retryPolicy", "hedgingPolicy", "timeout", "waitForReady", "maxRequestMessageBytes", "maxResponseMessageBytes")
	if f == nil {
		return nil
	}
	mp := &configv1.MethodPolicy{}
	for _, k := range []string{"waitForReady", "maxRequestMessageBytes", "maxResponseMessageBytes"} {
		if f[k] != nil {
			im.note(join(path, k), "ignored: not a resilience setting; keep it in the service config")
		}
	}
	names := f["name"]
	switch {
	case names == nil || names.kind == 'a' && len(names.vals) == 0:
		im.ps.addMsg(join(path, "name"), "empty, must list at least one name")
	case names.kind != 'a':
		im.ps.add(join(path, "name"), names.kindName(), "must be an array")
	default:
		for j, nn := range names.vals {
			np := index(join(path, "name"), j)
			nf := im.fields(nn, np, "service", "method")
			if nf == nil {
				continue
			}
			svc := im.str(nf["service"], join(np, "service"))
			m := im.str(nf["method"], join(np, "method"))
			if svc == "" && m != "" {
				im.ps.addMsg(join(np, "service"), fmt.Sprintf("empty, must be set when method (%q) is", m))
				continue
			}
			k := svc + "/" + m
			if prev, dup := seen[k]; dup {
				im.ps.addMsg(np, fmt.Sprintf("{service: %q, method: %q}, already named by %s", svc, m, prev))
				continue
			}
			seen[k] = np
			mp.Name = append(mp.Name, &configv1.Name{Service: svc, Method: m})
		}
	}
	if f["retryPolicy"] != nil && f["hedgingPolicy"] != nil {
		im.ps.addMsg(join(path, "hedgingPolicy"), "set together with retryPolicy, must set one")
	}
	if rp := f["retryPolicy"]; rp != nil {
		mp.Retry = im.retryPolicy(rp, join(path, "retryPolicy"))
	}
	if hp := f["hedgingPolicy"]; hp != nil {
		mp.Hedging = im.hedgingPolicy(hp, join(path, "hedgingPolicy"))
		// gRPC hedges any method with a hedging policy; this package
		// hedges idempotent methods only, so the import declares them so.
		mp.Idempotency = configv1.Idempotency_IDEMPOTENCY_IDEMPOTENT
	}
	if t := f["timeout"]; t != nil {
		mp.Timeout = im.duration(t, join(path, "timeout"), false)
	}
	return mp
}

// attempts reads maxAttempts: at least 2, clamped to 5 as gRPC does.
func (im *scImport) attempts(n *node, path string) int32 {
	if n == nil {
		im.ps.addMsg(path, "unset, must be set")
		return 0
	}
	v, ok := integer(n.text, 2, 1<<31-1)
	if n.kind != 'n' || !ok {
		im.ps.add(path, n.kindName(), "must be an integer of at least 2")
		return 0
	}
	if v > grpcMaxAttempts {
		im.note(path, fmt.Sprintf("%d clamped to %d, as gRPC does", v, grpcMaxAttempts))
		v = grpcMaxAttempts
	}
	return int32(v)
}

func (im *scImport) retryPolicy(n *node, path string) *configv1.RetryPolicy {
	f := im.fields(n, path, "maxAttempts", "initialBackoff", "maxBackoff", "backoffMultiplier", "retryableStatusCodes", "perAttemptRecvTimeout")
	if f == nil {
		return nil
	}
	if f["perAttemptRecvTimeout"] != nil {
		im.ps.addMsg(join(path, "perAttemptRecvTimeout"), "not supported: set retry.attempt_timeout in a grpc-resilience file instead")
	}
	n1 := im.attempts(f["maxAttempts"], join(path, "maxAttempts"))
	r := &configv1.RetryPolicy{MaxAttempts: &n1, Jitter: configv1.JitterKind_JITTER_KIND_FULL}
	initial := im.required(f["initialBackoff"], join(path, "initialBackoff"))
	ceiling := im.required(f["maxBackoff"], join(path, "maxBackoff"))
	mult := 0.0
	if m := f["backoffMultiplier"]; m == nil {
		im.ps.addMsg(join(path, "backoffMultiplier"), "unset, must be set")
	} else if v, ok := im.number(m, join(path, "backoffMultiplier")); ok {
		switch {
		case !(v > 0):
			im.ps.add(join(path, "backoffMultiplier"), v, "must be above 0")
		case v < 1:
			im.ps.add(join(path, "backoffMultiplier"), v, "must be at least 1: grpc-resilience's exponential backoff never shrinks")
		}
		mult = v
	}
	if initial != nil && ceiling != nil && ceiling.AsDuration() < initial.AsDuration() {
		// gRPC waits random(0, min(initial*mult^n, max)) = random(0, max).
		im.note(join(path, "initialBackoff"), fmt.Sprintf("%v above maxBackoff: imported as %v, the wait gRPC uses", initial.AsDuration(), ceiling.AsDuration()))
		initial = ceiling
	}
	r.Backoff = &configv1.Backoff{Kind: configv1.BackoffKind_BACKOFF_KIND_EXPONENTIAL, Initial: initial, Max: ceiling, Multiplier: &mult}
	codes := f["retryableStatusCodes"]
	if codes == nil || codes.kind == 'a' && len(codes.vals) == 0 {
		im.ps.addMsg(join(path, "retryableStatusCodes"), "empty, must list at least one code")
	} else {
		r.RetryableCodes = im.codes(codes, join(path, "retryableStatusCodes"))
	}
	return r
}

func (im *scImport) hedgingPolicy(n *node, path string) *configv1.HedgingPolicy {
	f := im.fields(n, path, "maxAttempts", "hedgingDelay", "nonFatalStatusCodes")
	if f == nil {
		return nil
	}
	extra := im.attempts(f["maxAttempts"], join(path, "maxAttempts")) - 1
	h := &configv1.HedgingPolicy{MaxExtraAttempts: &extra}
	if d := f["hedgingDelay"]; d != nil {
		h.Delay = im.duration(d, join(path, "hedgingDelay"), false)
	}
	if c := f["nonFatalStatusCodes"]; c != nil {
		h.NonFatalCodes = im.codes(c, join(path, "nonFatalStatusCodes"))
	}
	return h
}

// required reads a positive duration that must be set.
func (im *scImport) required(n *node, path string) *durationpb.Duration {
	if n == nil {
		im.ps.addMsg(path, "unset, must be set")
		return nil
	}
	return im.duration(n, path, true)
}

// duration reads a duration string such as "0.5s"; positive says it must
// be above zero, else it must not be negative.
func (im *scImport) duration(n *node, path string, positive bool) *durationpb.Duration {
	if n.kind != 's' {
		im.ps.add(path, n.kindName(), `must be a duration string such as "1.5s"`)
		return nil
	}
	d := new(durationpb.Duration)
	if err := protojson.Unmarshal([]byte(strconv.Quote(n.text)), d); err != nil {
		im.ps.add(path, strconv.Quote(n.text), `must be a duration such as "1.5s"`)
		return nil
	}
	td, ok := toDuration(d)
	switch {
	case !ok:
		im.ps.add(path, strconv.Quote(n.text), fmt.Sprintf("must be at most %v", maxDuration))
		return nil
	case positive && td <= 0:
		im.ps.add(path, strconv.Quote(n.text), "must be above 0")
		return nil
	case td < 0:
		im.ps.add(path, strconv.Quote(n.text), "must not be negative")
		return nil
	}
	return d
}

// codes reads a list of status codes, by name or by number as grpc-go
// accepts them, and returns their names.
func (im *scImport) codes(n *node, path string) []string {
	if n.kind != 'a' {
		im.ps.add(path, n.kindName(), "must be an array")
		return nil
	}
	var out []string
	for i, c := range n.vals {
		p := index(path, i)
		switch c.kind {
		case 's':
			if _, ok := parseCode(c.text); !ok {
				im.ps.add(p, c.kindName(), `must be a status code name such as "UNAVAILABLE"`)
				continue
			}
			out = append(out, c.text)
		case 'n':
			v, ok := integer(c.text, 0, 16)
			if !ok {
				im.ps.add(p, c.text, "must be a status code from 0 to 16")
				continue
			}
			out = append(out, codeNames[v])
		default:
			im.ps.add(p, c.kindName(), "must be a status code")
		}
	}
	return out
}

func (im *scImport) number(n *node, path string) (float64, bool) {
	if n == nil {
		im.ps.addMsg(path, "unset, must be set")
		return 0, false
	}
	if n.kind != 'n' {
		im.ps.add(path, n.kindName(), "must be a number")
		return 0, false
	}
	v, err := strconv.ParseFloat(n.text, 64)
	if err != nil {
		im.ps.add(path, n.text, "must be a number within the range of a double")
		return 0, false
	}
	return v, true
}

func (im *scImport) str(n *node, path string) string {
	if n == nil {
		return ""
	}
	if n.kind != 's' {
		im.ps.add(path, n.kindName(), "must be a string")
		return ""
	}
	return n.text
}
