// Command resiliencectl validates a grpc-resilience configuration file
// (JSON, YAML or a gRPC service config) and prints the effective policy of
// every method pattern as a table, followed by the target budget and the
// server pipeline.
//
// Usage:
//
//	resiliencectl [-format auto|json|yaml|service-config] FILE
//
// Durations may be written as Go writes them ("500ms", "1m30s") and enum
// values by their short names ("exponential", "token_bucket"); problems and
// the table name them so. It exits with status 0 when the file is valid, 1
// with every problem on standard error when it is not, and 2 on bad usage.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/engineeringlabs/grpc-resilience/interceptors/config"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command, with its arguments and outputs, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("resiliencectl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("format", "auto", "the file's format: auto, json, yaml or service-config")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: resiliencectl [-format auto|json|yaml|service-config] FILE")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	f, err := config.ParseFormat(*format)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	file := fs.Arg(0)
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	cfg, err := config.Parse(data, f)
	if err != nil {
		if cerr, ok := err.(*config.Error); ok {
			cerr.Source = file
		}
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, n := range cfg.Notes() {
		fmt.Fprintln(stderr, "note:", n)
	}
	if err := cfg.WriteTable(stdout); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
