package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// This file reads a trace back from Jaeger's query API
// (GET /api/traces/{id}) and prints it as a tree: the call, its attempts
// with their status and the wait before each, and the server's spans under
// their attempts.

// jaegerResponse is the part of the query API's answer the tree needs.
type jaegerResponse struct {
	Data []jaegerTrace `json:"data"`
}

type jaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []jaegerSpan             `json:"spans"`
	Processes map[string]jaegerProcess `json:"processes"`
}

type jaegerProcess struct {
	ServiceName string `json:"serviceName"`
}

type jaegerSpan struct {
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []jaegerRef `json:"references"`
	StartTime     int64       `json:"startTime"` // microseconds since the epoch
	Duration      int64       `json:"duration"`  // microseconds
	Tags          []jaegerTag `json:"tags"`
	Logs          []jaegerLog `json:"logs"`
	ProcessID     string      `json:"processID"`
}

type jaegerRef struct {
	RefType string `json:"refType"`
	SpanID  string `json:"spanID"`
}

type jaegerTag struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

type jaegerLog struct {
	Fields []jaegerTag `json:"fields"`
}

// tag returns the value of the tag key as text, "" when absent.
func (s jaegerSpan) tag(key string) string {
	for _, t := range s.Tags {
		if t.Key == key {
			switch v := t.Value.(type) {
			case string:
				return v
			case float64:
				return strconv.FormatFloat(v, 'f', -1, 64)
			case bool:
				return strconv.FormatBool(v)
			default:
				return fmt.Sprint(v)
			}
		}
	}
	return ""
}

// parent returns the span's parent's id, "" for a root.
func (s jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// fetchTrace asks Jaeger's query API at base for the trace id, and waits
// until it has at least minSpans spans (Jaeger stores spans a little after
// they arrive), for at most wait.
func fetchTrace(ctx context.Context, base, id string, minSpans int, wait time.Duration) ([]byte, error) {
	u, err := url.JoinPath(base, "api", "traces", id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	var last error
	for {
		body, err := getJSON(ctx, client, u)
		if err == nil {
			var r jaegerResponse
			if err = json.Unmarshal(body, &r); err == nil {
				if len(r.Data) > 0 && len(r.Data[0].Spans) >= minSpans {
					return body, nil
				}
				err = fmt.Errorf("trace %s has %d spans so far", id, spanCount(r))
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reading %s: %w", u, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func spanCount(r jaegerResponse) int {
	if len(r.Data) == 0 {
		return 0
	}
	return len(r.Data[0].Spans)
}

func getJSON(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", u, resp.Status)
	}
	return body, nil
}

// maxTreeSpans bounds the spans printed.
const maxTreeSpans = 200

// formatTrace writes the trace of a query API answer as a tree, children
// in the order they started.
func formatTrace(w io.Writer, body []byte) error {
	var r jaegerResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("not a Jaeger trace: %w", err)
	}
	if len(r.Data) == 0 || len(r.Data[0].Spans) == 0 {
		return errors.New("the trace has no spans")
	}
	tr := r.Data[0]
	byID := make(map[string]bool, len(tr.Spans))
	for _, s := range tr.Spans {
		byID[s.SpanID] = true
	}
	children := map[string][]jaegerSpan{}
	var roots []jaegerSpan
	start := tr.Spans[0].StartTime
	for _, s := range tr.Spans {
		start = min(start, s.StartTime)
		if p := s.parent(); p != "" && byID[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(a, b jaegerSpan) int {
		if a.StartTime != b.StartTime {
			return int(a.StartTime - b.StartTime)
		}
		return strings.Compare(a.SpanID, b.SpanID)
	}
	slices.SortFunc(roots, byStart)
	for _, c := range children {
		slices.SortFunc(c, byStart)
	}
	fmt.Fprintf(w, "trace %s: %d spans\n", tr.TraceID, len(tr.Spans))
	printed := 0
	var walk func(s jaegerSpan, prefix string, last, root bool)
	walk = func(s jaegerSpan, prefix string, last, root bool) {
		if printed >= maxTreeSpans {
			return
		}
		printed++
		branch, next := "├─ ", "│  "
		if last {
			branch, next = "└─ ", "   "
		}
		if root {
			branch, next = "", ""
		}
		fmt.Fprintf(w, "%s%s%s\n", prefix, branch, describeSpan(s, tr.Processes, start))
		kids := children[s.SpanID]
		for i, c := range kids {
			walk(c, prefix+next, i == len(kids)-1, false)
		}
	}
	for _, s := range roots {
		walk(s, "", true, true)
	}
	if printed < len(tr.Spans) {
		fmt.Fprintf(w, "(%d more spans not shown)\n", len(tr.Spans)-printed)
	}
	return nil
}

// describeSpan is one line of the tree: the span's name and service, when
// it started (after the trace's first span) and how long it took, its
// status, and for an attempt its number and the wait before it.
func describeSpan(s jaegerSpan, procs map[string]jaegerProcess, start int64) string {
	var b strings.Builder
	b.WriteString(s.OperationName)
	if p, ok := procs[s.ProcessID]; ok && p.ServiceName != "" {
		fmt.Fprintf(&b, " [%s]", p.ServiceName)
	}
	if kind := s.tag("span.kind"); kind != "" {
		fmt.Fprintf(&b, " %s", kind)
	}
	if n := s.tag("resilience.attempt"); n != "" {
		fmt.Fprintf(&b, " attempt %s", n)
		if d, err := strconv.ParseFloat(s.tag("resilience.attempt.delay_ms"), 64); err == nil && d > 0 {
			fmt.Fprintf(&b, " after a wait of %.1fms", d)
			if s.tag("resilience.attempt.pushback_honoured") == "true" {
				b.WriteString(" (server pushback)")
			}
		}
		if s.tag("resilience.attempt.hedge") == "true" {
			b.WriteString(" (hedge)")
		}
	}
	fmt.Fprintf(&b, " at +%s for %s", micros(s.StartTime-start), micros(s.Duration))
	if c := s.tag("rpc.grpc.status_code"); c != "" {
		if n, err := strconv.Atoi(c); err == nil && n >= 0 && n <= 16 {
			fmt.Fprintf(&b, ": %s", codes.Code(n))
		}
	} else if c := s.tag("rpc.response.status_code"); c != "" {
		fmt.Fprintf(&b, ": %s", c)
	}
	if n := s.tag("resilience.attempts"); n != "" {
		fmt.Fprintf(&b, ", %s attempts", n)
	}
	if o := s.tag("resilience.outcome"); o != "" {
		fmt.Fprintf(&b, ", outcome %s", o)
	}
	var events []string
	for _, l := range s.Logs {
		var name, kind string
		for _, f := range l.Fields {
			v, _ := f.Value.(string)
			switch f.Key {
			case "event":
				name = v
			case "resilience.fault.kind":
				kind = v
			}
		}
		if name != "" && kind != "" {
			name += " " + kind
		}
		if name != "" && len(events) < 8 {
			events = append(events, name)
		}
	}
	if len(events) > 0 {
		fmt.Fprintf(&b, " {%s}", strings.Join(events, ", "))
	}
	return b.String()
}

// micros formats a count of microseconds as a duration in milliseconds.
func micros(us int64) string {
	return strconv.FormatFloat(float64(us)/1000, 'f', 1, 64) + "ms"
}

// printTrace prints the retried call's trace, read back from Jaeger, as a
// tree. It flushes the spans still batched first.
func (d *demo) printTrace(ctx context.Context) error {
	id := d.obs.retriedTrace()
	if id == "" || d.tel == nil {
		return errors.New("no call was retried, or tracing is off: no trace to show")
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.tel.provider.ForceFlush(fctx); err != nil {
		return fmt.Errorf("flushing the spans: %w", err)
	}
	// A retried call has at least the call and two attempts.
	body, err := fetchTrace(ctx, d.cfg.JaegerQuery, id, 3, 20*time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\nThe retried call's trace, read back from %s:\n", d.cfg.JaegerQuery)
	return formatTrace(d.out, body)
}
