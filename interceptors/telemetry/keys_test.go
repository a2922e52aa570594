package telemetry_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// TestSecretCallerKeysNeverLeave runs a server whose bulkhead and rate
// limit are partitioned by a secret x-api-key header and drives one caller
// into both: a call held, a call shed, a call rate-limited. The secret
// must appear in no server event, span, metric, log line or snapshot,
// where its keyed hash must appear instead; with ShowKeys it appears as it
// is.
func TestSecretCallerKeysNeverLeave(t *testing.T) {
	const secret = "sk-live-7f3e9a1c5b2d4e6f"
	for _, show := range []bool{false, true} {
		name := "hashed"
		if show {
			name = "ShowKeys"
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t, rigConfig{logLevel: slog.LevelDebug, server: server.Config{
				Bulkhead:  server.BulkheadConfig{Limit: 1, PartitionBy: server.PartitionByHeader, Header: "x-api-key", ShowKeys: show},
				RateLimit: server.RateLimitConfig{Rate: 0.01, Burst: 2, PartitionBy: server.PartitionByHeader, Header: "x-api-key", ShowKeys: show},
			}})
			stopGauges := r.tel.ObserveServer("api", r.sp)
			defer stopGauges()
			stopGeneric := r.tel.ObservePartitioned("generic", r.sp.Bulkhead().Partitions())
			defer stopGeneric()
			var mu sync.Mutex
			var evs []server.Event
			cancel := r.sp.Subscribe(server.Observer{OnEvent: func(_ context.Context, e server.Event) {
				mu.Lock()
				evs = append(evs, e)
				mu.Unlock()
			}})
			defer cancel()

			ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 20*time.Second), "x-api-key", secret)
			release := r.hold(t, ctx) // the caller's only bulkhead slot, and its first permit
			if _, err := r.client.Unary(ctx, &testingv1.UnaryRequest{}); status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("second call: %v, want it shed", err)
			}
			if _, err := r.client.Unary(ctx, &testingv1.UnaryRequest{}); status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("third call: %v, want it rate-limited", err)
			}

			want := r.sp.Bulkhead().DisplayKey(secret)
			if show != (want == secret) || r.sp.RateLimit().DisplayKey(secret) != want {
				t.Fatalf("display form %q with ShowKeys %v", want, show)
			}
			if !show && (!strings.HasPrefix(want, "k:") || len(want) != 14) {
				t.Fatalf("display form %q, want k: and 12 hexadecimal digits", want)
			}
			// While the held call runs: the snapshot and the gauges.
			snap, err := json.Marshal(r.sp.Snapshot())
			if err != nil {
				t.Fatal(err)
			}
			md := r.collect(t)
			rm, err := json.Marshal(md)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct{ name, key string }{{"api", want}, {"generic", hashedByDefault(t, secret)}} {
				if got := total(t, md, telemetry.MetricBulkheadInFlight, attribute.String(telemetry.AttrBulkheadName, c.name),
					attribute.String(telemetry.AttrBulkheadKey, c.key)); got != 1 {
					t.Errorf("in-flight gauge of %s with key %q = %d, want 1", c.name, c.key, got)
				}
			}
			release()
			r.spans.waitKind(t, trace.SpanKindServer, 3)

			mu.Lock()
			var shed, limited int
			var evText strings.Builder
			for _, e := range evs {
				evText.WriteString(e.Key + "|" + e.FullMethod + "\n")
				switch e.Kind {
				case server.EventShed:
					shed++
					if e.Key != want {
						t.Errorf("shed event Key %q, want %q", e.Key, want)
					}
				case server.EventRateLimited:
					limited++
					if e.Key != "header:x-api-key" {
						t.Errorf("rate-limited event Key %q, want the quota's class", e.Key)
					}
				}
			}
			mu.Unlock()
			if shed != 1 || limited != 1 {
				t.Fatalf("%d shed and %d rate-limited events, want 1 and 1", shed, limited)
			}
			var shedKeys []string
			for _, sp := range r.spans.Ended() {
				for _, e := range sp.Events() {
					if e.Name == telemetry.EventShed {
						v, _ := attr(e.Attributes, telemetry.AttrBulkheadKey)
						shedKeys = append(shedKeys, v.AsString())
					}
				}
			}
			if len(shedKeys) != 1 || shedKeys[0] != want {
				t.Errorf("shed span events name the keys %q, want [%q]", shedKeys, want)
			}

			where := map[string]string{
				"events":   evText.String(),
				"snapshot": string(snap),
				"metrics":  string(rm),
				"spans":    spanText(r.spans.Ended()),
				"logs":     r.logs.String(),
			}
			for place, text := range where {
				if !show && strings.Contains(text, secret) {
					t.Errorf("the secret key appears in the %s:\n%s", place, text)
				}
			}
			// The display form reaches each place that names partitions.
			for _, place := range []string{"events", "snapshot", "metrics", "spans"} {
				if !strings.Contains(where[place], want) {
					t.Errorf("the %s do not name the caller as %q:\n%s", place, want, where[place])
				}
			}
			var s server.ServerSnapshot
			if err := json.Unmarshal(snap, &s); err != nil {
				t.Fatal(err)
			}
			if len(s.Bulkhead.Partitions) != 1 || s.Bulkhead.Partitions[0].Key != want || s.Bulkhead.Partitions[0].Metrics.InFlight != 1 {
				t.Errorf("bulkhead partitions %+v, want one for %q holding a call", s.Bulkhead.Partitions, want)
			}
			if q := s.RateLimit.Quotas; len(q) != 1 || len(q[0].Partitions) != 1 || q[0].Partitions[0].Key != want || q[0].Metrics.Limited != 1 {
				t.Errorf("rate-limit quotas %+v, want one key %q with one call limited", q, want)
			}
		})
	}
}

// spanText renders the names, attributes and events of spans, for
// searching.
func spanText(spans []sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	for _, sp := range spans {
		b.WriteString(sp.Name() + "\n")
		for _, kv := range sp.Attributes() {
			b.WriteString(string(kv.Key) + "=" + kv.Value.String() + "\n")
		}
		for _, e := range sp.Events() {
			b.WriteString(" event " + e.Name + "\n")
			for _, kv := range e.Attributes {
				b.WriteString("  " + string(kv.Key) + "=" + kv.Value.String() + "\n")
			}
		}
	}
	return b.String()
}

// Two servers given the same KeyHashKey show a caller under the same name,
// so that a fleet's dashboards agree; a server's default is its process's
// random key, which ObservePartitioned also uses.
func TestKeyHashKeySharedAcrossServers(t *testing.T) {
	fleetKey := []byte("0123456789abcdef-fleet")
	cfg := server.Config{KeyHashKey: fleetKey, Bulkhead: server.BulkheadConfig{Limit: 1, PartitionBy: server.PartitionByHeader, Header: "x-api-key"}}
	a, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.KeyHashKey = append([]byte(nil), fleetKey...)
	b, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.KeyHashKey = nil
	own, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.Bulkhead().DisplayKey("caller") != b.Bulkhead().DisplayKey("caller") {
		t.Error("two servers with one KeyHashKey show a caller differently")
	}
	if a.Bulkhead().DisplayKey("caller") == own.Bulkhead().DisplayKey("caller") {
		t.Error("a configured KeyHashKey and the process's random key agree")
	}
	if own.Bulkhead().DisplayKey("caller") != hashedByDefault(t, "caller") {
		t.Error("two servers without a KeyHashKey show a caller differently")
	}
	cfg.KeyHashKey = []byte("short")
	if _, err := server.New(cfg); err == nil || strings.Contains(err.Error(), "short") {
		t.Errorf("a 5-byte KeyHashKey: %v; want a FieldError that does not repeat the key", err)
	}
}

// hashedByDefault returns key as a server without KeyHashKey or ShowKeys
// shows it: hashed under the process's random key.
func hashedByDefault(t *testing.T, key string) string {
	t.Helper()
	s, err := server.New(server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, PartitionBy: server.PartitionByHeader, Header: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	return s.Bulkhead().DisplayKey(key)
}
