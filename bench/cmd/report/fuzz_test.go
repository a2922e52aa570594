package main

import (
	"strings"
	"testing"
)

// FuzzParse feeds parse arbitrary text: it never panics, and what it
// accepts is consistent: every benchmark it names has values, a name
// printed again with a GOMAXPROCS suffix parses back to itself, and a
// group lists the names it holds.
func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add("BenchmarkX-8 10 1.5 ns/op 0 allocs/op\n")
	f.Add("BenchmarkX 1 NaN ns/op\n# k: v\ncpu: c\n")
	f.Add("Benchmark\nBenchmarkA/b 1 1e309 x\n")
	f.Fuzz(func(t *testing.T, in string) {
		r, err := parse(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, name := range r.order {
			if len(r.values[name]) == 0 {
				t.Errorf("%q: no values", name)
			}
			again, err := parse(strings.NewReader("Benchmark" + name + "-2 1 1 x\n"))
			if err != nil || len(again.order) != 1 || again.order[0] != name {
				t.Errorf("%q does not round-trip with a GOMAXPROCS suffix: %v, %v", name, again, err)
			}
			if group, lib, ok := strings.Cut(name, "/"); ok {
				found := false
				for _, l := range r.group(group) {
					found = found || group+"/"+l == name
				}
				if !found {
					t.Errorf("group %q lacks %q", group, lib)
				}
			}
		}
	})
}
