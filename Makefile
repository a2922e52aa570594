# One entry point for every task. Needs only Go: tools are pinned in
# tools/go.mod and run with `go tool -modfile=tools/go.mod`.

GO       ?= go
TOOL     := $(GO) tool -modfile=tools/go.mod
# How long `make test` runs each fuzz target; `make fuzz` runs them longer.
FUZZTIME ?= 3s
# Packages that hold fuzz targets, found from the sources.
FUZZPKGS  = $(sort $(dir $(shell grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./bench/')))

.PHONY: examples test unit fuzz-seeds fuzz lint proto proto-check proto-breaking bench jaeger jaeger-run demo-jaeger demo

## test: everything a change must pass: unit and integration tests under -race
## with goroutine-leak checks, the example programs, then each fuzz target for $(FUZZTIME).
test: unit examples fuzz-seeds

unit: jaeger
	JAEGER_BIN=$(CURDIR)/$(JAEGER_BIN) $(GO) test -race -count=1 -shuffle=on ./...

fuzz-seeds:
	@set -e; for dir in $(FUZZPKGS); do \
	  for target in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir*_test.go | sed 's/^func //'); do \
	    echo "fuzz $$dir $$target for $(FUZZTIME)"; \
	    $(GO) test -run='^$$' -fuzz="^$$target$$" -fuzztime=$(FUZZTIME) $$dir; \
	  done; \
	done

## fuzz: each fuzz target for a minute.
fuzz:
	$(MAKE) fuzz-seeds FUZZTIME=1m

## lint: go vet and staticcheck.
lint:
	$(GO) vet ./...
	$(TOOL) staticcheck ./...

## proto: regenerate proto/gen from proto/ with buf.
proto:
	$(TOOL) buf lint
	$(TOOL) buf generate

## proto-check: fail when buf lint complains or proto/gen is stale.
proto-check:
	$(TOOL) buf lint
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(TOOL) buf generate --output "$$tmp" && \
	  diff -r proto/gen "$$tmp/proto/gen" && echo "proto/gen is up to date"

## proto-breaking: fail when proto/ breaks compatibility with main.
proto-breaking:
	$(TOOL) buf breaking --against '.git#branch=main'

## bench: the benchmarks of every package.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./...

## examples: run each example program and compare what it prints with its
## output.txt.
EXAMPLES = $(sort $(dir $(wildcard examples/*/output.txt)))
examples:
	@set -e; for dir in $(EXAMPLES); do \
	  echo "example $$dir"; \
	  $(GO) run ./$$dir | diff -u $${dir}output.txt - ; \
	done

## demo: the plain and the resilient gRPC client side by side against a
## server that goes through faults (about 30s); writes demo.svg. Flags go in
## DEMO_FLAGS, e.g. make demo DEMO_FLAGS='-duration 10s -profile outage-only'.
demo:
	$(GO) run ./examples/demo $(DEMO_FLAGS)

## jaeger: build the pinned Jaeger (tools/jaeger/go.mod) into $(JAEGER_BIN),
## unless it is newer than tools/jaeger/go.sum; a cold build takes minutes.
JAEGER_BIN = .cache/jaeger
jaeger: $(JAEGER_BIN)
$(JAEGER_BIN): tools/jaeger/go.mod tools/jaeger/go.sum
	$(GO) build -modfile=tools/jaeger/go.mod -o $@ github.com/jaegertracing/jaeger/cmd/jaeger

## jaeger-run: run Jaeger in the foreground on loopback with in-memory
## storage (tools/jaeger/config.yaml): OTLP/gRPC on 127.0.0.1:4317, UI and
## query API on http://127.0.0.1:16686.
jaeger-run: jaeger
	$(JAEGER_BIN) --config=file:tools/jaeger/config.yaml

## demo-jaeger: start Jaeger, run the demo exporting to it, print the URL of
## a retried call's trace, keep Jaeger up until Ctrl-C (DEMO_JAEGER_FOR=10m
## bounds it).
demo-jaeger: jaeger
	JAEGER_BIN=$(JAEGER_BIN) GO=$(GO) scripts/demo-jaeger.sh
