package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// node is a parsed JSON value that keeps the order and duplicates of
// object keys, which encoding/json's maps lose.
type node struct {
	kind  byte // 'o' object, 'a' array, 's' string, 'n' number, 'b' bool, 'z' null
	keys  []string
	vals  []*node // object values, in the order of keys; array elements
	text  string  // string value or number text
	truth bool
}

// kindName is how problems name a JSON kind.
func (n *node) kindName() string {
	switch n.kind {
	case 'o':
		return "an object"
	case 'a':
		return "an array"
	case 's':
		return strconv.Quote(n.text)
	case 'n':
		return n.text
	case 'b':
		return strconv.FormatBool(n.truth)
	}
	return "null"
}

// appendJSON appends n to b as JSON, keys in their order.
func (n *node) appendJSON(b []byte) []byte {
	switch n.kind {
	case 'o':
		b = append(b, '{')
		for i, k := range n.keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = n.vals[i].appendJSON(b)
		}
		return append(b, '}')
	case 'a':
		b = append(b, '[')
		for i, v := range n.vals {
			if i > 0 {
				b = append(b, ',')
			}
			b = v.appendJSON(b)
		}
		return append(b, ']')
	case 's':
		return appendString(b, n.text)
	case 'n':
		return append(b, n.text...)
	case 'b':
		return strconv.AppendBool(b, n.truth)
	}
	return append(b, "null"...)
}

// appendString appends s, valid UTF-8, as a JSON string.
func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

// parseJSON parses data, which must hold exactly one JSON value.
func parseJSON(data []byte) (*node, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("invalid JSON: not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := parseValue(dec)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("unexpected end of input")
		}
		off := dec.InputOffset()
		line := 1 + bytes.Count(data[:min(int(off), len(data))], []byte("\n"))
		return nil, fmt.Errorf("invalid JSON at line %d: %v", line, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the top-level value")
	}
	return n, nil
}

func parseValue(dec *json.Decoder) (*node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &node{kind: 'o'}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key %v is not a string", kt)
				}
				v, err := parseValue(dec)
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k)
				n.vals = append(n.vals, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		case '[':
			n := &node{kind: 'a'}
			for dec.More() {
				v, err := parseValue(dec)
				if err != nil {
					return nil, err
				}
				n.vals = append(n.vals, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case string:
		return &node{kind: 's', text: t}, nil
	case json.Number:
		return &node{kind: 'n', text: string(t)}, nil
	case bool:
		return &node{kind: 'b', truth: t}, nil
	case nil:
		return &node{kind: 'z'}, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// unmarshalStrict fills m from the JSON in data, strictly: it first checks
// the whole document against m's descriptor, reporting every unknown field,
// field set twice and value of the wrong type with its path, and rewrites
// the short forms of durations and enum values (see names.go) to the proto3
// JSON mapping; only then does it let protojson (which stops at the first
// problem and names no path) unmarshal it.
func unmarshalStrict(data []byte, m proto.Message) problems {
	var ps problems
	root, err := parseJSON(data)
	if err != nil {
		ps.addMsg("", err.Error())
		return ps
	}
	checkMessage(root, m.ProtoReflect().Descriptor(), "", &ps)
	if len(ps) > 0 {
		return ps
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(root.appendJSON(nil), m); err != nil {
		ps.addMsg("", strings.Replace(err.Error(), "proto:\u00a0", "proto: ", 1))
	}
	return ps
}

// join appends a field name to a path.
func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// ident matches the keys that paths spell as fields; others are quoted.
var ident = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// joinKey appends a key of the document, which may be anything, to a path;
// a long key is quoted and clipped.
func joinKey(path, k string) string {
	if len(k) <= maxQuoted && ident.MatchString(k) {
		return join(path, k)
	}
	return key(path, k)
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func key(path, k string) string { return fmt.Sprintf("%s[%q]", path, clip(k)) }

const durationName = "google.protobuf.Duration"

// checkMessage checks n against md; path is md's path in the document.
func checkMessage(n *node, md protoreflect.MessageDescriptor, path string, ps *problems) {
	if n.kind == 'z' && path != "" {
		return // null is an unset field
	}
	if md.FullName() == durationName {
		if n.kind != 's' {
			ps.add(path, n.kindName(), "must be "+durationExamples)
			return
		}
		text, ok := parseDuration(n.text)
		if !ok {
			ps.add(path, strconv.Quote(n.text), durationHelp)
			return
		}
		n.text = text // the proto3 JSON form, for protojson
		return
	}
	if n.kind != 'o' {
		where := path
		if where == "" {
			ps.addMsg("", fmt.Sprintf("the document is %s, must be an object", n.kindName()))
			return
		}
		ps.add(where, n.kindName(), "must be an object")
		return
	}
	fields := md.Fields()
	seen := make(map[protoreflect.FieldNumber]string, len(n.keys))
	for i, k := range n.keys {
		fd := fields.ByJSONName(k)
		if fd == nil && protoreflect.Name(k).IsValid() {
			fd = fields.ByName(protoreflect.Name(k))
		}
		if fd == nil {
			why := "unknown field"
			if s := suggest(k, fields); s != "" {
				why += fmt.Sprintf(", did you mean %q?", s)
			}
			ps.addMsg(joinKey(path, k), why)
			continue
		}
		fpath := join(path, string(fd.Name()))
		if prev, dup := seen[fd.Number()]; dup {
			ps.addMsg(fpath, fmt.Sprintf("set twice (as %q and %q)", prev, k))
			continue
		}
		seen[fd.Number()] = k
		checkField(n.vals[i], fd, fpath, ps)
	}
}

// checkField checks the value of one field.
func checkField(n *node, fd protoreflect.FieldDescriptor, path string, ps *problems) {
	if n.kind == 'z' {
		return
	}
	switch {
	case fd.IsMap():
		if n.kind != 'o' {
			ps.add(path, n.kindName(), "must be an object")
			return
		}
		seen := make(map[string]bool, len(n.keys))
		for i, k := range n.keys {
			if seen[k] {
				ps.addMsg(key(path, k), "set twice")
				continue
			}
			seen[k] = true
			if n.vals[i].kind == 'z' {
				ps.add(key(path, k), "null", "must not be null")
				continue
			}
			checkSingular(n.vals[i], fd.MapValue(), key(path, k), ps)
		}
	case fd.IsList():
		if n.kind != 'a' {
			ps.add(path, n.kindName(), "must be an array")
			return
		}
		for i, e := range n.vals {
			if e.kind == 'z' {
				ps.add(index(path, i), "null", "must not be null")
				continue
			}
			checkSingular(e, fd, index(path, i), ps)
		}
	default:
		checkSingular(n, fd, path, ps)
	}
}

// jsonNumber matches the JSON number syntax.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// checkSingular checks one value of fd's kind.
func checkSingular(n *node, fd protoreflect.FieldDescriptor, path string, ps *problems) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		checkMessage(n, fd.Message(), path, ps)
	case protoreflect.BoolKind:
		if n.kind != 'b' {
			ps.add(path, n.kindName(), "must be true or false")
		}
	case protoreflect.StringKind:
		if n.kind != 's' {
			ps.add(path, n.kindName(), "must be a string")
		}
	case protoreflect.EnumKind:
		ed := fd.Enum()
		switch n.kind {
		case 's':
			if v := enumValue(ed, n.text); v != nil {
				n.text = string(v.Name()) // the full name, for protojson
			} else {
				ps.add(path, strconv.Quote(n.text), "must be one of "+shortNames(ed))
			}
		case 'n':
			if _, ok := integer(n.text, math.MinInt32, math.MaxInt32); !ok {
				ps.add(path, n.text, "must be one of "+shortNames(ed))
			}
		default:
			ps.add(path, n.kindName(), "must be one of "+shortNames(ed))
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		checkInt(n, path, math.MinInt32, math.MaxInt32, ps)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		checkInt(n, path, 0, math.MaxUint32, ps)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		checkInt(n, path, math.MinInt64, math.MaxInt64, ps)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		checkUint64(n, path, ps)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		checkFloat(n, path, fd.Kind() == protoreflect.FloatKind, ps)
	default:
		ps.add(path, n.kindName(), fmt.Sprintf("fields of kind %v are not supported", fd.Kind()))
	}
}

// numberText returns the number n holds, as a JSON number or a string
// holding one, as protojson accepts for integers.
func numberText(n *node) (string, bool) {
	switch n.kind {
	case 'n':
		return n.text, true
	case 's':
		return n.text, jsonNumber.MatchString(n.text)
	}
	return "", false
}

func checkInt(n *node, path string, lo, hi int64, ps *problems) {
	text, ok := numberText(n)
	if !ok {
		ps.add(path, n.kindName(), "must be an integer")
		return
	}
	if _, ok := integer(text, lo, hi); !ok {
		ps.add(path, n.kindName(), fmt.Sprintf("must be an integer from %d to %d", lo, hi))
	}
}

func checkUint64(n *node, path string, ps *problems) {
	text, ok := numberText(n)
	if !ok {
		ps.add(path, n.kindName(), "must be an integer")
		return
	}
	if _, err := strconv.ParseUint(text, 10, 64); err != nil {
		ps.add(path, n.kindName(), "must be an integer from 0 to 18446744073709551615, without fraction or exponent")
	}
}

// integer parses a JSON number that must be a whole number in [lo, hi].
// Exponents and fractions are accepted when the value is whole, as
// protojson does; to keep the work bounded, only plain integers and
// numbers of at most 400 characters are considered.
func integer(text string, lo, hi int64) (int64, bool) {
	if v, err := strconv.ParseInt(text, 10, 64); err == nil {
		return v, v >= lo && v <= hi
	}
	if !jsonNumber.MatchString(text) || len(text) > 400 {
		return 0, false
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f != math.Trunc(f) || f < float64(lo) || f > float64(hi) {
		return 0, false
	}
	return int64(f), true
}

func checkFloat(n *node, path string, single bool, ps *problems) {
	text := n.text
	switch n.kind {
	case 's':
		if text == "NaN" || text == "Infinity" || text == "-Infinity" {
			return
		}
		if !jsonNumber.MatchString(text) {
			ps.add(path, n.kindName(), `must be a number, "NaN", "Infinity" or "-Infinity"`)
			return
		}
	case 'n':
	default:
		ps.add(path, n.kindName(), "must be a number")
		return
	}
	bits := 64
	if single {
		bits = 32
	}
	if _, err := strconv.ParseFloat(text, bits); err != nil {
		ps.add(path, n.kindName(), "must be a number within the range of a double")
	}
}

// suggest returns the name of the field of fields closest to k, when one
// is within two edits (ignoring case and the _ of snake case), else "".
func suggest(k string, fields protoreflect.FieldDescriptors) string {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	want := norm(k)
	if len(want) > 64 {
		return ""
	}
	best, bestD := "", 3
	for i := 0; i < fields.Len(); i++ {
		name := string(fields.Get(i).Name())
		if d := distance(want, norm(name)); d < bestD {
			best, bestD = name, d
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
