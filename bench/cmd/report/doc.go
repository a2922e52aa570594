// Command report turns the raw output of `make bench` (the micro-benchmarks'
// `go test -bench` output followed by the scenarios' lines, both in the Go
// benchmark format) into BENCHMARKS.md and SVG charts:
//
//	go run ./cmd/report -in results/raw.txt -md ../BENCHMARKS.md -svg results -notes notes.md
//
// A benchmark that ran several times (-count) counts with the median of its
// runs. Every figure is set against a baseline of the same run: our
// library against each peer, each client against the bare call. The goals
// of the benchmark issue are checked against these ratios and reported as
// met or not met. Lines starting with "# " carry the machine's description
// (load average, Go version) into the report; anything else that is not a
// benchmark line is ignored. The charts are plain SVG written by hand,
// with no dependency.
package main
