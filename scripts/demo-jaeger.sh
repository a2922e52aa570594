#!/usr/bin/env bash
# demo-jaeger.sh: start the pinned Jaeger on loopback (tools/jaeger/config.yaml,
# in-memory storage), run the demo exporting its traces to it, print a
# retried call's trace as a tree read back from Jaeger's query API and the
# URL of that trace in the query API, and keep Jaeger running until
# Ctrl-C, or for DEMO_JAEGER_FOR (a duration for `sleep`, such as 10m) when
# set. Called by `make demo-jaeger`, which builds Jaeger first.
#
# Environment: JAEGER_BIN (default .cache/jaeger; any Jaeger v2 binary
# works), GO (default go), JAEGER_OTLP_GRPC (default 127.0.0.1:4317),
# JAEGER_QUERY_HTTP (default 127.0.0.1:16686), JAEGER_QUERY_GRPC,
# JAEGER_HEALTH (see the config), DEMO_SVG (the demo's chart, default
# .cache/demo.svg; its folder is created), DEMO_ARGS (more flags for the
# demo, such as -keep to keep the demo and its console running).
set -euo pipefail
cd "$(dirname "$0")/.."

JAEGER_BIN=${JAEGER_BIN:-.cache/jaeger}
GO=${GO:-go}
export JAEGER_OTLP_GRPC=${JAEGER_OTLP_GRPC:-127.0.0.1:4317}
export JAEGER_QUERY_HTTP=${JAEGER_QUERY_HTTP:-127.0.0.1:16686}
export JAEGER_QUERY_GRPC=${JAEGER_QUERY_GRPC:-127.0.0.1:16685}
export JAEGER_HEALTH=${JAEGER_HEALTH:-127.0.0.1:13133}

if [[ ! -x $JAEGER_BIN ]]; then
  echo "demo-jaeger: $JAEGER_BIN is missing; run 'make jaeger-bin' first" >&2
  exit 1
fi

log=$(mktemp -t jaeger.XXXXXX.log)
"$JAEGER_BIN" --config=file:tools/jaeger/config.yaml >"$log" 2>&1 &
jaeger_pid=$!
stop() {
  kill "$jaeger_pid" 2>/dev/null || true
  wait "$jaeger_pid" 2>/dev/null || true
  rm -f "$log"
}
trap stop EXIT
trap 'exit 130' INT TERM

# healthy asks Jaeger's health check, with bash alone (no curl needed).
healthy() {
  (
    exec 3<>"/dev/tcp/${JAEGER_HEALTH%:*}/${JAEGER_HEALTH##*:}" &&
      printf 'GET /status HTTP/1.0\r\nHost: %s\r\n\r\n' "$JAEGER_HEALTH" >&3 &&
      head -n 1 <&3 | grep -q ' 200 '
  ) 2>/dev/null
}

# Wait for the health check, at most 60s.
ready=
for _ in $(seq 1 600); do
  if ! kill -0 "$jaeger_pid" 2>/dev/null; then
    echo "demo-jaeger: Jaeger exited; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  if healthy; then
    ready=1
    break
  fi
  sleep 0.1
done
if [[ -z $ready ]]; then
  echo "demo-jaeger: Jaeger not ready after 60s; its log:" >&2
  cat "$log" >&2
  exit 1
fi
echo "Jaeger is up: OTLP/gRPC on $JAEGER_OTLP_GRPC, query API on http://$JAEGER_QUERY_HTTP/api/"

DEMO_SVG=${DEMO_SVG:-.cache/demo.svg}
mkdir -p "$(dirname "$DEMO_SVG")"
out=$(mktemp -t demo.XXXXXX.out)
# A failing demo leaves Jaeger up with the traces it sent. The Jaeger built
# from its Go module serves the query API but no UI, so the console links
# each retried call to its trace as JSON; with Jaeger's own image (which
# serves the UI), link to /trace/{trace_id} instead.
# shellcheck disable=SC2086 # DEMO_ARGS is split on purpose
if ! "$GO" run ./examples/demo -otlp "$JAEGER_OTLP_GRPC" -jaeger-query "http://$JAEGER_QUERY_HTTP" \
  -trace-url "http://$JAEGER_QUERY_HTTP/api/traces/{trace_id}" -svg "$DEMO_SVG" ${DEMO_ARGS:-} | tee "$out"; then
  echo "demo-jaeger: the demo failed; Jaeger keeps what it received" >&2
fi
trace=$(sed -n 's/^retried-trace: \([0-9a-f]\{32\}\)$/\1/p' "$out" | head -n 1)
rm -f "$out"

echo
echo "Services:          http://$JAEGER_QUERY_HTTP/api/services"
if [[ -n $trace ]]; then
  echo "A retried call:    http://$JAEGER_QUERY_HTTP/api/traces/$trace"
else
  echo "The demo printed no retried-trace line: no call was retried." >&2
fi
if [[ -n ${DEMO_JAEGER_FOR:-} ]]; then
  echo "Jaeger stays up for $DEMO_JAEGER_FOR."
  sleep "$DEMO_JAEGER_FOR"
else
  echo "Jaeger stays up until Ctrl-C."
  wait "$jaeger_pid"
fi
