package config

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
)

// TestRateLimitConversion checks that the rate limits of a file reach the
// Go types field by field: the client's rate, burst, wait and scope (short
// enum names), the server's quotas, partition, header, cap, per-method
// quotas (an empty one exempts) and pushback, and the peer partition of
// the server bulkhead; and that an empty server rate_limit is valid and
// limits nothing.
func TestRateLimitConversion(t *testing.T) {
	cfg, err := Parse([]byte(`
method_policies:
  - name: [{}]
    rate_limit: {rate: 0.5, burst: 3, wait: true, scope: target}
  - name: [{service: pkg.Svc}]
    rate_limit: {rate: 100}
server:
  rate_limit:
    rate: 10
    burst: 20
    partition_by: header
    header: x-caller
    max_partitions: 50
    no_pushback: true
    methods:
      /pkg.Auth/Login: {rate: 1, burst: 5}
      pkg.Health: {}
  bulkhead: {limit: 4, partition_by: peer}
`), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	cc := cfg.ClientConfig()
	if got, want := cc.Default.RateLimit, (&interceptors.RateLimitPolicy{Rate: 0.5, Burst: 3, Wait: true, Scope: interceptors.ScopeTarget}); !reflect.DeepEqual(got, want) {
		t.Errorf("default rate limit = %+v, want %+v", got, want)
	}
	if got, want := cc.Services["pkg.Svc"].RateLimit, (&interceptors.RateLimitPolicy{Rate: 100, Scope: interceptors.ScopeMethod}); !reflect.DeepEqual(got, want) {
		t.Errorf("service rate limit = %+v, want %+v", got, want)
	}
	sc := cfg.ServerConfig()
	want := server.RateLimitConfig{
		Rate: 10, Burst: 20, PartitionBy: server.PartitionByHeader, Header: "x-caller", MaxPartitions: 50, NoPushback: true,
		Methods: map[string]server.RateQuota{"/pkg.Auth/Login": {Rate: 1, Burst: 5}, "pkg.Health": {}},
	}
	if !reflect.DeepEqual(sc.RateLimit, want) {
		t.Errorf("server rate limit = %+v, want %+v", sc.RateLimit, want)
	}
	if sc.Bulkhead.PartitionBy != server.PartitionByPeer {
		t.Errorf("bulkhead partition = %v, want peer", sc.Bulkhead.PartitionBy)
	}
	if err := sc.Validate(); err != nil {
		t.Errorf("server config: %v", err)
	}

	empty, err := Parse([]byte("server: {rate_limit: {}}\n"), FormatYAML)
	if err != nil {
		t.Fatalf("empty rate_limit: %v", err)
	}
	if got := empty.ServerConfig().RateLimit; !reflect.DeepEqual(got, server.RateLimitConfig{}) {
		t.Errorf("empty rate_limit = %+v, want the zero RateLimitConfig", got)
	}
}

// TestRateLimitFieldErrors checks the translation of the Go types'
// FieldErrors about rate limits to the file's paths, through the tables
// alone: the client policy's fields, the server's, a per-method quota's
// (its map key quoted as file paths quote keys), and a field files cannot
// set (reported at the rate limit, in Go terms).
func TestRateLimitFieldErrors(t *testing.T) {
	fe := func(field string, v any, why string) error {
		return &resilience.FieldError{Field: field, Value: v, Reason: why}
	}
	var c conv
	c.goProblems("method_policies[3]", errors.Join(
		fe("RateLimit.Rate", -1.0, "r1"),
		fe("RateLimit.Burst", -2, "r2"),
		fe("RateLimit.Scope", 9, "r3"),
	), policyFields, nil)
	c.goProblems("server", errors.Join(
		fe("RateLimit.Rate", -1.0, "r4"),
		fe("RateLimit.PartitionBy", "peer", "set but Rate is 0 and Methods is empty"),
		fe("RateLimit.Methods[/pkg.Svc/Get].Burst", 2, "set but Rate is 0"),
		fe("RateLimit.Methods[pkg.Svc]", "pkg.Svc", "r5"),
		fe("RateLimit.MaxPartitions", -3, "r6"),
		fe("RateLimit.NoPushback", true, "r7"),
		fe("RateLimit.KeyFunc", nil, "r8"),
	), serverFields, nil)
	c.goProblems("server.rate_limit", fe("Header", "", "r9"), rateLimitFields, nil)
	var got []string
	for _, p := range c.ps {
		got = append(got, p.String())
	}
	want := []string{
		"method_policies[3].rate_limit.rate: -1, r1",
		"method_policies[3].rate_limit.burst: -2, r2",
		"method_policies[3].rate_limit.scope: 9, r3",
		"server.rate_limit.rate: -1, r4",
		`server.rate_limit.partition_by: "peer", set but rate is 0 and methods is empty`,
		`server.rate_limit.methods["/pkg.Svc/Get"].burst: 2, set but rate is 0`,
		`server.rate_limit.methods["pkg.Svc"]: "pkg.Svc", r5`,
		"server.rate_limit.max_partitions: -3, r6",
		"server.rate_limit.no_pushback: true, r7",
		"server.rate_limit: KeyFunc: <nil>, r8",
		`server.rate_limit.header: "", r9`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%q\nwant:\n%q", got, want)
	}
}
