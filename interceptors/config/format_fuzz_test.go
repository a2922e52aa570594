package config

import "testing"

// FuzzParseFormat checks the parser of format names: it never panics,
// accepts exactly the names String returns, and what it accepts prints
// back as its input.
func FuzzParseFormat(f *testing.F) {
	for _, s := range append(formatNames[:], "", "JSON", "yaml ", "\xff") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fm, err := ParseFormat(s)
		if err != nil {
			return
		}
		if fm.String() != s {
			t.Fatalf("ParseFormat(%q) = %v, which prints as %q", s, fm, fm.String())
		}
	})
}
