package fleet

import (
	"strings"
	"testing"
	"time"
)

func init() {
	helpers["echo"] = func() int {
		emit("ready %d", helperIndex())
		for c := range commands() {
			emit("echo %s", c)
		}
		return 0
	}
}

// TestProcs checks the harness itself: helpers start in their role with
// their index, answer commands, and exit when their stdin closes.
func TestProcs(t *testing.T) {
	ps := startProcs(t, "echo", 2, nil)
	for i, p := range ps {
		if got, want := p.Expect("ready", 30*time.Second), "ready "+string(rune('0'+i)); got != want {
			t.Fatalf("%s: %q, want %q", p.name, got, want)
		}
		p.Send("hello %d", i)
		if got, want := p.Expect("echo", 30*time.Second), "echo hello "+string(rune('0'+i)); got != want {
			t.Fatalf("%s: %q, want %q", p.name, got, want)
		}
	}
	ps[0].stdin.Close()
	if err, ok := ps[0].Wait(procStopTimeout); !ok || err != nil {
		t.Fatalf("after stdin closed: exited %v, err %v", ok, err)
	}
}

func init() {
	helpers["flood"] = func() int {
		emit("ready %d", helperIndex())
		line := strings.Repeat("x", 100)
		for i := range 20000 {
			emit("flood %d %s", i, line)
		}
		for range commands() {
		}
		return 0
	}
}

// TestProcsStopUnread stops a helper that printed far more lines than the
// test read: stop drains them, so the helper exits instead of blocking on
// a full pipe.
func TestProcsStopUnread(t *testing.T) {
	p := startProcs(t, "flood", 1, nil)[0]
	p.Expect("ready", 30*time.Second)
	start := time.Now()
	p.stop()
	if took := time.Since(start); took >= procStopTimeout {
		t.Fatalf("stop took %v: the helper was killed, not drained", took)
	}
	if err, ok := p.Wait(procStopTimeout); !ok || err != nil {
		t.Fatalf("the helper exited %v, err %v; want a clean exit", ok, err)
	}
}
