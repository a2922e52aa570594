package config_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/engineeringlabs/grpc-resilience/interceptors/config"
)

var update = flag.Bool("update", false, "rewrite the .golden files of testdata/bad")

// TestGoldenErrors loads every file of testdata/bad and compares the
// problems reported with the file's .golden twin: each bad file must be
// rejected with every problem at once, each naming its field path.
func TestGoldenErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*")
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
			_, err := config.Load(file)
			var cerr *config.Error
			if !errors.As(err, &cerr) {
				t.Fatalf("Load(%s) = %v, want a *config.Error", file, err)
			}
			if cerr.Source != file {
				t.Errorf("Source = %q, want %q", cerr.Source, file)
			}
			got := err.Error() + "\n"
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
				t.Errorf("Load(%s) error:\n%s\nwant (%s):\n%s", file, got, golden, want)
			}
		})
	}
	if n < 8 {
		t.Fatalf("found %d bad files, want at least 8", n)
	}
}
