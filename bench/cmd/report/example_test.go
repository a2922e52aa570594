package main

import (
	"fmt"
	"strings"
)

// parse reads go test -bench output, with the median of repeated runs; the
// report then sets each figure against ours.
func Example_parse() {
	r, _ := parse(strings.NewReader(sample))
	ours, _ := r.get("BreakerAllowRecordParallel/ours", "ns/op")
	sony, _ := r.get("BreakerAllowRecordParallel/sony-gobreaker", "ns/op")
	fmt.Printf("ours %s ns/op, sony/gobreaker %sx ours\n", format(ours), format(sony/ours))
	// Output: ours 20.0 ns/op, sony/gobreaker 4.50x ours
}
