# One entry point for every task. Needs only Go: tools are pinned in
# tools/go.mod and run with `go tool -modfile=tools/go.mod`.

GO       ?= go
TOOL     := $(GO) tool -modfile=tools/go.mod
# How much `make test` fuzzes each target, as a count of executions:
# a duration (-fuzztime=3s) trips a race in Go 1.26's fuzzing coordinator
# that fails a healthy target with "context deadline exceeded" when the time
# runs out (go.dev/issue/75804, fixed in Go 1.27); a count never does.
# `make fuzz` fuzzes longer.
FUZZTIME ?= 20000x
# Packages that hold fuzz targets, found from the sources.
FUZZPKGS  = $(sort $(dir $(shell grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./bench/')))
# The same in the bench module, relative to bench/.
BENCHFUZZPKGS = $(sort $(dir $(shell cd bench && grep -rl --include='*_test.go' '^func Fuzz' .)))

.PHONY: examples test unit fuzz-seeds fuzz lint proto proto-check proto-breaking bench bench-lint bench-pkgs bench-test jaeger jaeger-bin demo-jaeger demo soak

## test: everything a change must pass: unit and integration tests under -race
## with goroutine-leak checks, the bench module's tests, the example programs,
## then each fuzz target for $(FUZZTIME) executions.
test: unit bench-test examples fuzz-seeds

unit: jaeger-bin
	@command -v redis-server >/dev/null 2>&1 || echo "make test: redis-server not found, the fleet tests (redisfleet, integration/fleet) skip: apt-get install -y redis-server to run them"
	@command -v chromium >/dev/null 2>&1 || echo "make test: chromium not found, the browser tests of the console skip: apt-get install -y chromium to run them"
	JAEGER_BIN=$(CURDIR)/$(JAEGER_BIN) $(GO) test -race -count=1 -shuffle=on ./...

fuzz-seeds:
	@set -e; for dir in $(FUZZPKGS); do \
	  for target in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir*_test.go | sed 's/^func //'); do \
	    echo "fuzz $$dir $$target: $(FUZZTIME)"; \
	    $(GO) test -run='^$$' -fuzz="^$$target$$" -fuzztime=$(FUZZTIME) $$dir; \
	  done; \
	done
	@set -e; cd bench && for dir in $(BENCHFUZZPKGS); do \
	  for target in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir*_test.go | sed 's/^func //'); do \
	    echo "fuzz bench/$$dir $$target: $(FUZZTIME)"; \
	    $(GO) test -run='^$$' -fuzz="^$$target$$" -fuzztime=$(FUZZTIME) $$dir; \
	  done; \
	done

## fuzz: each fuzz target for a million executions.
fuzz:
	$(MAKE) fuzz-seeds FUZZTIME=1000000x

## soak: the reliability soak (integration/soak_test.go) for $(SOAKTIME):
## 64 callers through the chaos proxy and chaos interceptor, fault rate ramping
## up and down, every invariant and the heap checked. `make test` runs 6s of it.
SOAKTIME ?= 60s
soak:
	$(GO) test -race -count=1 -run '^TestSoak$$' -v -timeout 10m ./integration/ -soak.duration=$(SOAKTIME)

## lint: go vet and staticcheck, on the library and on the bench module, and
## a check that go.mod and go.sum are tidy.
lint: bench-lint
	$(GO) mod tidy -diff
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

## bench: the benchmarks side by side with the peer libraries (bench/, its
## own module): the micro-benchmarks, then the loopback gRPC scenarios, in
## about 25 minutes on 2 cores (every loop is bounded); writes
## bench/results/raw.txt, bench/results/*.svg and BENCHMARKS.md. BENCHCOUNT
## and BENCHTIME tune the micro-benchmarks, CPUCOUNT the rounds of the -cpu
## runs, SCENARIOCOUNT the rounds of scenarios (the report takes medians).
BENCHCOUNT    ?= 5
BENCHTIME     ?= 200ms
CPUCOUNT      ?= 3
SCENARIOCOUNT ?= 3
# PARALLELBENCH: the RunParallel micro-benchmarks, run apart with
# -cpu 1,2,4,8 (CPUCOUNT rounds) to show how they scale with cores.
PARALLELBENCH = ^Benchmark(BreakerAllowRecord|BulkheadTryAcquireRelease|BulkheadAcquireRelease|UnaryPipeline|RateLimitAllow)Parallel$$
bench:
	cd bench && $(GO) vet ./...
	@mkdir -p bench/results
	@{ echo "# date: $$(date -u '+%Y-%m-%d %H:%M UTC')"; \
	  echo "# loadavg-start: $$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"; } > bench/results/raw.txt
	cd bench && $(GO) test -run='^$$' -bench=. -skip='$(PARALLELBENCH)' -benchmem -count=$(BENCHCOUNT) -benchtime=$(BENCHTIME) -timeout=15m ./micro/ > results/micro.txt
	cd bench && $(GO) test -run='^$$' -bench='$(PARALLELBENCH)' -cpu=1,2,4,8 -benchmem -count=$(CPUCOUNT) -benchtime=$(BENCHTIME) -timeout=15m ./micro/ > results/cpu.txt
	cd bench && $(GO) run ./cmd/scenarios -count=$(SCENARIOCOUNT) > results/scenarios.txt
	@cat bench/results/micro.txt bench/results/cpu.txt bench/results/scenarios.txt >> bench/results/raw.txt
	@echo "# loadavg-end: $$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" >> bench/results/raw.txt
	@rm bench/results/micro.txt bench/results/cpu.txt bench/results/scenarios.txt
	cd bench && $(GO) run ./cmd/report -in results/raw.txt -md ../BENCHMARKS.md -svg results -notes notes.md
	@grep -A17 '^## Goals' BENCHMARKS.md

## bench-test: the bench module's own tests, short (its scenarios run small).
bench-test:
	cd bench && $(GO) test -race -short -count=1 ./...

## bench-lint: go vet and staticcheck on the bench module (the root's lint
## does not enter it, being a separate module).
bench-lint:
	cd bench && $(GO) mod tidy -diff
	cd bench && $(GO) vet ./...
	cd bench && $(GO) tool -modfile=../tools/go.mod staticcheck ./...

## bench-pkgs: the benchmarks of every package of the library itself.
bench-pkgs:
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

## jaeger-bin: build the pinned Jaeger (tools/jaeger/go.mod) into $(JAEGER_BIN),
## unless it is newer than tools/jaeger/go.sum; a cold build takes minutes.
JAEGER_BIN = .cache/jaeger
jaeger-bin: $(JAEGER_BIN)
$(JAEGER_BIN): tools/jaeger/go.mod tools/jaeger/go.sum
	$(GO) build -modfile=tools/jaeger/go.mod -o $@ github.com/jaegertracing/jaeger/cmd/jaeger

## jaeger: build Jaeger if needed and run it in the foreground on loopback with in-memory
## storage (tools/jaeger/config.yaml): OTLP/gRPC on 127.0.0.1:4317, UI and
## query API on http://127.0.0.1:16686.
jaeger: jaeger-bin
	$(JAEGER_BIN) --config=file:tools/jaeger/config.yaml

## demo-jaeger: start Jaeger, run the demo exporting to it, print the URL of
## a retried call's trace, keep Jaeger up until Ctrl-C (DEMO_JAEGER_FOR=10m
## bounds it).
demo-jaeger: jaeger-bin
	JAEGER_BIN=$(JAEGER_BIN) GO=$(GO) scripts/demo-jaeger.sh
