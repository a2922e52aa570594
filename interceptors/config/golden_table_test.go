package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/engineeringlabs/grpc-resilience/interceptors/config"
)

// TestGoldenTables loads every file of testdata/good and compares the
// table WriteTable prints, every default filled in, with the file's
// .golden twin: a valid file loads and describes each policy as written.
func TestGoldenTables(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, file := range files {
		if strings.HasSuffix(file, ".golden") {
			continue
		}
		n++
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, err := config.Load(file)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := cfg.WriteTable(&b); err != nil {
				t.Fatal(err)
			}
			got := b.String()
			golden := strings.TrimSuffix(file, filepath.Ext(file)) + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("table of %s:\n%s\nwant (%s):\n%s", file, got, golden, want)
			}
		})
	}
	if n == 0 {
		t.Fatal("no file in testdata/good")
	}
}
