package stackhash

import (
	"sync"
	"testing"
)

// TestHashTellsGoroutinesApart checks that goroutines alive at the same
// time, each on a stack of its own, get different hashes, and that one
// goroutine gets the same hash from one call to the next. A goroutine whose
// stack grows after it took its hash leaves its old stack to a goroutine
// started later, which may then take the same hash: so the test asks that
// most hashes differ, not all.
func TestHashTellsGoroutinesApart(t *testing.T) {
	const n = 64
	hashes := make([]uint64, n)
	var ready, done sync.WaitGroup
	ready.Add(n)
	done.Add(n)
	release := make(chan struct{})
	for i := range n {
		go func() {
			defer done.Done()
			h := Hash()
			if again := Hash(); again != h {
				t.Errorf("goroutine %d: hash %x, then %x", i, h, again)
			}
			hashes[i] = h
			ready.Done()
			<-release // alive until every hash is taken
		}()
	}
	ready.Wait()
	close(release)
	done.Wait()
	distinct := make(map[uint64]bool, n)
	for _, h := range hashes {
		distinct[h] = true
	}
	if len(distinct) < n/2 {
		t.Errorf("%d distinct hashes of %d live goroutines, want at least %d", len(distinct), n, n/2)
	}
	// Four stripes, as the breaker has at GOMAXPROCS 2: the live
	// goroutines must spread over all of them.
	stripes := make(map[uint64]bool)
	for _, h := range hashes {
		stripes[h>>62] = true
	}
	if len(stripes) != 4 {
		t.Errorf("64 goroutines fell on %d of 4 stripes", len(stripes))
	}
}

func TestHashAllocatesNothing(t *testing.T) {
	if a := testing.AllocsPerRun(100, func() { _ = Hash() }); a != 0 {
		t.Errorf("Hash allocates %v times", a)
	}
}
