package config

import (
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Files may spell two kinds of values more briefly than the proto3 JSON
// mapping does; the loader rewrites them to that mapping before protojson
// reads the document, wherever they appear in the schema (the fields are
// found through the descriptors, not listed):
//
//   - A google.protobuf.Duration may be anything time.ParseDuration
//     accepts ("500ms", "1m30s", "-2h") as well as the mapping's own
//     "0.5s" form, which also reaches beyond time.Duration's ±292 years.
//   - An enum value may be its short name: the value's name without the
//     enum type's prefix, in lower case ("exponential" for
//     BACKOFF_KIND_EXPONENTIAL), as well as its full name or number.

// durationExamples is how problems say what a duration looks like.
const durationExamples = `a duration such as "500ms", "1.5s" or "1m30s"`

// durationHelp is the reason of a duration that cannot be read.
const durationHelp = "must be " + durationExamples + ", within ±2562047h"

// parseDuration reads a duration as a file may write it, and returns it
// in the proto3 JSON form ("1.500s"): ok is false when s is neither a
// proto3 JSON duration nor a duration time.ParseDuration accepts.
func parseDuration(s string) (text string, ok bool) {
	// Bound the work: the longest valid form ("-315576000000.000000001s"
	// or a ParseDuration string of every unit) is far shorter.
	if len(s) > 64 {
		return "", false
	}
	var d durationpb.Duration
	if protojson.Unmarshal([]byte(strconv.Quote(s)), &d) == nil {
		return s, true
	}
	td, err := time.ParseDuration(s)
	if err != nil {
		return "", false
	}
	return formatDuration(td), true
}

// formatDuration writes td in the proto3 JSON form: seconds with the
// nanoseconds as up to 9 decimals and the suffix "s".
func formatDuration(td time.Duration) string {
	neg := td < 0
	// Work in uint64 so that math.MinInt64 negates without overflow.
	u := uint64(td)
	if neg {
		u = -u
	}
	sec, nanos := u/1e9, u%1e9
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	b.WriteString(strconv.FormatUint(sec, 10))
	if nanos != 0 {
		frac := strconv.FormatUint(nanos+1e9, 10)[1:] // 9 digits
		b.WriteByte('.')
		b.WriteString(strings.TrimRight(frac, "0"))
	}
	b.WriteByte('s')
	return b.String()
}

// enumPrefix returns the prefix of ed's value names, the enum's name in
// UPPER_SNAKE_CASE followed by "_": "BACKOFF_KIND_" for BackoffKind, as
// buf's ENUM_VALUE_PREFIX rule requires.
func enumPrefix(ed protoreflect.EnumDescriptor) string {
	var b strings.Builder
	name := string(ed.Name())
	for i, r := range name {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	b.WriteByte('_')
	return b.String()
}

// shortName returns the short name of an enum value: its name without
// the enum's prefix, in lower case ("exponential" for
// BACKOFF_KIND_EXPONENTIAL).
func shortName(v protoreflect.EnumValueDescriptor) string {
	name := string(v.Name())
	if p := enumPrefix(v.Parent().(protoreflect.EnumDescriptor)); strings.HasPrefix(name, p) && len(name) > len(p) {
		name = name[len(p):]
	}
	return strings.ToLower(name)
}

// enumValue returns the value of ed that s names, by full or short name.
func enumValue(ed protoreflect.EnumDescriptor, s string) protoreflect.EnumValueDescriptor {
	vals := ed.Values()
	if v := vals.ByName(protoreflect.Name(s)); v != nil {
		return v
	}
	for i := 0; i < vals.Len(); i++ {
		if v := vals.Get(i); shortName(v) == s {
			return v
		}
	}
	return nil
}

// isUnspecified reports whether v is the zero value of its enum, which
// proto3 takes for "unset".
func isUnspecified(v protoreflect.EnumValueDescriptor) bool { return v.Number() == 0 }

// shortNames lists the short names of ed's values but the zero one, which
// stands for "unset": "constant, linear, exponential".
func shortNames(ed protoreflect.EnumDescriptor) string {
	vals := ed.Values()
	var names []string
	for i := 0; i < vals.Len(); i++ {
		if v := vals.Get(i); !isUnspecified(v) {
			names = append(names, shortName(v))
		}
	}
	return strings.Join(names, ", ")
}

// enumText returns how problems and tables name the value e: its short
// name, "unset" for the zero value, or its number when the schema has no
// such value.
func enumText(e protoreflect.Enum) string {
	v := e.Descriptor().Values().ByNumber(e.Number())
	switch {
	case v == nil:
		return strconv.Itoa(int(e.Number()))
	case isUnspecified(v):
		return "unset"
	}
	return shortName(v)
}

// short returns the short name of the value e, whatever its number.
func short(e protoreflect.Enum) string {
	if v := e.Descriptor().Values().ByNumber(e.Number()); v != nil {
		return shortName(v)
	}
	return strconv.Itoa(int(e.Number()))
}
