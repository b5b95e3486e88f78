#!/usr/bin/env bash
# Starts the demo backends from examples/standalone.yaml, then the agent in
# the foreground. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
./bin/demo-backend -listen web-1=127.0.0.1:9001,web-2=127.0.0.1:9002,api-v1=127.0.0.1:9003,api-v2=127.0.0.1:9004,h2c=127.0.0.1:9005 &
backend=$!
trap 'kill $backend 2>/dev/null || true' EXIT
trap 'exit 143' INT TERM # run the EXIT trap on signals too
cat <<'TXT'
edge-agent: proxy on http://127.0.0.1:8080, admin on http://127.0.0.1:9901
Try, in another terminal:
  curl -s localhost:8080/                              # web, round robin over two backends
  curl -s localhost:8080/api/users                     # canary 90/10 between api-v1 and api-v2
  curl -s -H 'x-beta: true' localhost:8080/api/me      # beta users reach api-v2
  curl -si localhost:8080/old/page                     # 301 redirect
  curl -sN localhost:8080/events                       # server-sent events, streamed
  curl -s --http2-prior-knowledge localhost:8080/h2    # h2c in, h2c upstream
  curl -s localhost:9901/metrics | grep edge_agent_    # metrics
  curl -s localhost:9901/debug/config                  # live config
TXT
./bin/edge-agent run --config examples/standalone.yaml &
agent=$!
trap 'kill $agent 2>/dev/null; wait $agent; exit 143' INT TERM
wait $agent
