package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// modulePath identifies the repository root's go.mod.
const modulePath = "module github.com/engineeringlabs/grpc-resilience\n"

// repoRoot walks up from the test's working directory to the directory
// whose go.mod declares this module.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte(modulePath)) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod of github.com/engineeringlabs/grpc-resilience above the working directory")
		}
		dir = parent
	}
}

// buildGhz builds the pinned ghz (tools/ghz/go.mod) into a temporary
// directory and returns the binary's path. A cold module cache makes this
// take about a minute.
func buildGhz(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	bin := filepath.Join(t.TempDir(), "ghz")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-modfile="+filepath.Join(root, "tools", "ghz", "go.mod"), "-o", bin, "github.com/bojand/ghz/cmd/ghz")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building ghz: %v\n%s", err, out)
	}
	return bin
}

// ghzReport is the part of ghz's JSON report the tests read. ghz computes
// LatencyDistribution over the successful calls only (without
// --count-errors); Details has every call.
type ghzReport struct {
	Count               uint64         `json:"count"`
	Total               time.Duration  `json:"total"`
	Rps                 float64        `json:"rps"`
	StatusCodeDist      map[string]int `json:"statusCodeDistribution"`
	LatencyDistribution []struct {
		Percentage int           `json:"percentage"`
		Latency    time.Duration `json:"latency"`
	} `json:"latencyDistribution"`
	Details []struct {
		Latency time.Duration `json:"latency"`
		Status  string        `json:"status"`
	} `json:"details"`
}

// ghzTimeout bounds one ghz run. (ghz's own --max-duration cannot bound a
// run of -n calls: in v0.120.0 it turns into --duration and drops -n.)
const ghzTimeout = 2 * time.Minute

// runGhz runs ghz with args against host and decodes its JSON report.
func runGhz(t *testing.T, bin, host string, args ...string) ghzReport {
	t.Helper()
	out := filepath.Join(t.TempDir(), "report.json")
	args = append(args, "--insecure", "--format", "json", "--output", out, host)
	ctx, cancel := context.WithTimeout(t.Context(), ghzTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		// ghz exits non-zero when calls failed, which overload tests expect;
		// only a missing report is a failure.
		if !errors.As(err, &ee) {
			t.Fatalf("ghz: %v\n%s", err, stderr.String())
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("ghz wrote no report: %v\n%s", err, stderr.String())
	}
	var r ghzReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("decoding ghz report: %v", err)
	}
	if r.Count == 0 {
		t.Fatalf("ghz made no calls:\n%s", stderr.String())
	}
	return r
}

// percentile returns ghz's figure for p percent of the successful calls.
func (r ghzReport) percentile(p int) time.Duration {
	for _, l := range r.LatencyDistribution {
		if l.Percentage == p {
			return l.Latency
		}
	}
	return 0
}

// latencies returns the latencies of the calls that ended with status,
// sorted.
func (r ghzReport) latencies(status string) []time.Duration {
	var ls []time.Duration
	for _, d := range r.Details {
		if strings.EqualFold(d.Status, status) {
			ls = append(ls, d.Latency)
		}
	}
	slices.Sort(ls)
	return ls
}

// quantile returns the q-quantile (0..1) of sorted durations, 0 for none.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}
