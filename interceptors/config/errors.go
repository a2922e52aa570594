package config

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Problem is one thing wrong with a configuration: the field it concerns
// and what is wrong with it.
type Problem struct {
	// Path is the field's path in the file, such as
	// "method_policies[2].retry.max_attempts"; empty when the problem
	// concerns no field (a syntax error).
	Path string
	// Message says what is wrong, starting with the bad value where
	// there is one, such as "0, must be at least 1".
	Message string
}

// String returns "path: message", or the message alone when Path is empty.
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Error is the error of a configuration that cannot be loaded: it lists
// every problem found, in the order of the file. It is immutable once
// returned and safe for concurrent reads.
type Error struct {
	// Source names what was loaded, such as a file name; it may be empty.
	Source string
	// Problems are every problem found, at least one.
	Problems []Problem
}

// Error returns "config: SOURCE: PROBLEM" for one problem, and a first
// line with the count followed by one indented line per problem for more,
// the first maxListed of them; Problems has them all.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	if len(e.Problems) == 1 {
		b.WriteString(e.Problems[0].String())
		return b.String()
	}
	fmt.Fprintf(&b, "%d problems:", len(e.Problems))
	for i, p := range e.Problems {
		if i == maxListed {
			fmt.Fprintf(&b, "\n\t... and %d more", len(e.Problems)-maxListed)
			break
		}
		b.WriteString("\n\t")
		b.WriteString(p.String())
	}
	return b.String()
}

// maxListed is how many problems Error lists.
const maxListed = 100

// problems collects the problems of one load.
type problems []Problem

// add records that the value at path is bad, why saying what it must be:
// "path: value, why".
func (ps *problems) add(path string, value any, why string) {
	*ps = append(*ps, Problem{Path: path, Message: clip(fmt.Sprint(value)) + ", " + why})
}

// maxQuoted is how much of a bad value or key a problem quotes, in bytes.
const maxQuoted = 100

// clip shortens s to at most maxQuoted bytes (on a rune boundary) and says
// how long it was, so that a huge value in a file gives a short error.
func clip(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s...(%d bytes)", s[:cut], len(s))
}

// addMsg records a problem whose message is not about one value.
func (ps *problems) addMsg(path, msg string) {
	*ps = append(*ps, Problem{Path: path, Message: msg})
}

// has reports whether a problem concerns path.
func (ps problems) has(path string) bool {
	for _, p := range ps {
		if p.Path == path {
			return true
		}
	}
	return false
}

// err returns the problems as an *Error, or nil when there are none.
func (ps problems) err(source string) error {
	if len(ps) == 0 {
		return nil
	}
	return &Error{Source: source, Problems: ps}
}
