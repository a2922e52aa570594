package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/engineeringlabs/grpc-resilience/interceptors/config"
)

// FuzzParse feeds arbitrary bytes to the loader as JSON, YAML and gRPC
// service config: it must never panic, every rejection must be an *Error
// with at least one problem, and when the bytes are a JSON object every
// problem must name the field it concerns. A configuration it accepts must
// build its client and server options and print its table.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.*")
	bad, _ := filepath.Glob("testdata/bad/*.*")
	good, _ := filepath.Glob("testdata/good/*.yaml")
	for _, file := range append(append(seeds, bad...), good...) {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"method_policies":[{"name":[{}],"retry":{"max_attempts":"1e1","backoff":{"kind":3,"initial":"1s"}}}]}`))
	f.Add([]byte(`{"server":{"chaos":{"seed":"18446744073709551615","methods":{"/a.B/":{"error_rate":"NaN"}}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		object := isObject(data)
		for _, format := range []config.Format{config.FormatJSON, config.FormatYAML, config.FormatServiceConfig, config.FormatAuto} {
			cfg, err := config.Parse(data, format)
			if err != nil {
				var cerr *config.Error
				if !errors.As(err, &cerr) || len(cerr.Problems) == 0 {
					t.Fatalf("%v: error %v is not an *Error with problems", format, err)
				}
				for _, p := range cerr.Problems {
					if p.Message == "" {
						t.Fatalf("%v: problem without message: %+v", format, p)
					}
					if object && format == config.FormatJSON && p.Path == "" {
						t.Fatalf("%v: problem of a JSON object names no field: %v", format, p)
					}
				}
				continue
			}
			if _, err := cfg.DialOptions(); err != nil {
				t.Fatalf("%v: DialOptions of a valid config: %v", format, err)
			}
			if _, err := cfg.ServerOptions(); err != nil {
				t.Fatalf("%v: ServerOptions of a valid config: %v", format, err)
			}
			if err := cfg.WriteTable(io.Discard); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// isObject reports whether data is one JSON object.
func isObject(data []byte) bool {
	// encoding/json accepts invalid UTF-8 (replacing it), but JSON text is
	// UTF-8 (RFC 8259) and Parse rejects it as a whole, naming no field.
	if !utf8.Valid(data) {
		return false
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if dec.Decode(&m) != nil || m == nil {
		return false
	}
	_, err := dec.Token()
	return err == io.EOF
}
