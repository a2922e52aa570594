// Package stackhash tells apart the goroutines running at once, cheaply,
// so that counters written by every call can be striped: each goroutine
// writes the stripe its hash picks, which stays in its core's cache.
package stackhash

import "unsafe"

// Hash returns a 64-bit hash of the address of the caller's stack. Take
// its top bits: they are the best mixed (h>>(64-k) picks one of 2^k
// stripes).
//
// Goroutine stacks are disjoint blocks of at least 2 KiB, each aligned to
// 2 KiB at least, so the address bits above the lowest 11 tell the
// goroutines running at once apart, and a multiplicative hash spreads them.
// Two goroutines may still pick the same stripe (two of them on four
// stripes do one time in four); a goroutine's stack moves only when it
// grows, which moves the goroutine to another stripe. The address is only
// a number: it is never turned back into a pointer, and whichever stripe a
// call picks, counts summed over the stripes stay exact. Hash is safe for
// concurrent use and allocates nothing.
func Hash() uint64 {
	var x byte
	return uint64(uintptr(unsafe.Pointer(&x))>>11) * 0x9e3779b97f4a7c15
}
