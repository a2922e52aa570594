// Command report turns the raw output of `make bench` (the micro-benchmarks'
// `go test -bench` output followed by the scenarios' lines, both in the Go
// benchmark format) into BENCHMARKS.md and SVG charts:
//
//	go run ./cmd/report -in results/raw.txt -md ../BENCHMARKS.md -svg results -notes notes.md
//
// A benchmark that ran several times (-count) counts with the median of its
// runs. The "-N" GOMAXPROCS suffix go test adds is kept as a dimension:
// benchmarks run with -cpu 1,2,4,8 get a table of ns/op per value, and
// their main figure is at the GOMAXPROCS they ran with most often (on a
// tie, the report's own, which on the machine of the run is go test's
// default). Every figure is set against a baseline of the same run: our
// library against each peer, each client against the bare call. The goals
// the report states are checked against these ratios and reported as
// met or not met. Lines starting with "# " carry the machine's description
// (load average, Go version) into the report; anything else that is not a
// benchmark line is ignored. A benchmark missing from the input (a
// scenario not run, a file not there yet) makes its tables and goals say
// "not measured", never an error. The charts are plain SVG written by
// hand, with no dependency: bars for the scenarios, lines for the costs
// as keys and callers grow.
package main
