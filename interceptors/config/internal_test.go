package config

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"
)

// FuzzToDuration checks the conversion of google.protobuf.Duration to
// time.Duration: it never panics, accepts exactly the valid durations that
// fit a time.Duration, and converts those exactly.
func FuzzToDuration(f *testing.F) {
	f.Add(int64(0), int32(0))
	f.Add(int64(1), int32(500_000_000))
	f.Add(int64(-1), int32(-1))
	f.Add(int64(9223372036), int32(854775807))
	f.Add(int64(9223372036), int32(854775808))
	f.Add(int64(-9223372036), int32(-854775808))
	f.Add(int64(-9223372036), int32(-854775809))
	f.Add(int64(315576000001), int32(0))
	f.Add(int64(1), int32(-1))
	f.Add(int64(math.MaxInt64), int32(math.MaxInt32))
	f.Fuzz(func(t *testing.T, sec int64, nanos int32) {
		d := &durationpb.Duration{Seconds: sec, Nanos: nanos}
		td, ok := toDuration(d)
		valid := d.CheckValid() == nil
		if ok && !valid {
			t.Fatalf("toDuration(%v) accepted an invalid duration", d)
		}
		// The exact value in nanoseconds, in float for the range check.
		exact := float64(sec)*1e9 + float64(nanos)
		fits := exact >= math.MinInt64 && exact <= math.MaxInt64
		if valid && ok {
			if want := time.Duration(sec)*time.Second + time.Duration(nanos); td != want {
				t.Fatalf("toDuration(%v) = %v, want %v", d, td, want)
			}
		}
		if valid && !ok && fits && math.Abs(exact) < 9.2e18 {
			t.Fatalf("toDuration(%v) rejected a duration that fits", d)
		}
		if durationText(d) == "" {
			t.Fatal("empty durationText")
		}
	})
}

func TestLoadRefusesWhatIsNotASmallRegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, bytes.Repeat([]byte(" "), MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		fifo:        "must be a regular file",
		"/dev/zero": "must be a regular file",
		dir:         "must be a regular file",
		big:         "larger than",
	} {
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("Load(%s) = %v, want an error naming the path and %q", path, err, want)
		}
	}
}

func TestErrorsStayShortForHugeInput(t *testing.T) {
	huge := strings.Repeat("y", 1<<20)
	for name, doc := range map[string]string{
		"value": `{"method_policies": [{"name": [{}], "timeout": "` + huge + `"}]}`,
		"key":   `{"method_policies": [{"name": [{}], "` + huge + `": 1}]}`,
	} {
		_, err := Parse([]byte(doc), FormatJSON)
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		if msg := err.Error(); len(msg) > 1000 || !strings.Contains(msg, "...(104857") {
			t.Errorf("%s: %d-byte error %.200q, want a short one saying how long the value was", name, len(msg), msg)
		}
	}

	var ps problems
	for i := range 250 {
		ps.add(index("method_policies", i)+".retry.max_attempts", 0, "must be at least 1")
	}
	msg := ps.err("f.yaml").Error()
	if got := strings.Count(msg, "\n\t"); got != maxListed+1 || !strings.Contains(msg, "250 problems:") || !strings.HasSuffix(msg, "... and 150 more") {
		t.Errorf("error lists %d lines (%.80q ... %q), want the first %d and a count of the rest", got, msg, msg[len(msg)-30:], maxListed)
	}
	if len(ps.err("f.yaml").(*Error).Problems) != 250 {
		t.Error("Problems must keep every problem")
	}
}

func TestClipKeepsRunesWhole(t *testing.T) {
	s := strings.Repeat("é", 80) // 160 bytes
	got := clip(s)
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "...(160 bytes)") {
		t.Errorf("clip = %q", got)
	}
	if clip("short") != "short" {
		t.Error("clip changed a short value")
	}
}
