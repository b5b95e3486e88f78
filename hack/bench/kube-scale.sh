#!/usr/bin/env bash
# Kubernetes scale benchmark: edge-agent in Kubernetes mode against a real
# kube-apiserver with 1,000 annotated Services, then 100 host changes.
# Prints a summary (convergence time, change latency percentiles, agent
# memory and CPU). See hack/bench/README.md.
#
# Needs root (network namespaces for the backends) and Go. The first run on
# a machine builds etcd and kube-apiserver (~20 min, cached afterwards, see
# hack/kube/build.sh).
#
# Environment (all optional):
#   OUT_DIR=dir   keep results here (default: a new /tmp/kube-scale.XXXXXX):
#                 summary.txt, agent.log, edge-agent.yaml, test.log
#
# Exits non-zero if the run fails (e.g. routes never converge). Performance
# numbers are only reported against their goals, never asserted on.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/../.." && pwd)

die() { printf '[kube-scale] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "needs root (network namespaces for the backends)"
command -v go >/dev/null || die "go not found"

OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/kube-scale.XXXXXX)}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

cd "$REPO_ROOT"
set +e
EDGE_AGENT_SCALE=1 EDGE_AGENT_SCALE_DIR="$OUT_DIR" \
  go test ./hack/bench/kubescale/ -run '^TestKubernetesScale$' -v -count=1 -timeout 20m 2>&1 |
  tee "$OUT_DIR/test.log"
status=${PIPESTATUS[0]}
set -e

echo
if ((status == 0)); then
  echo "[kube-scale] results in $OUT_DIR (summary.txt, agent.log, test.log)"
else
  echo "[kube-scale] FAILED (exit $status); logs in $OUT_DIR (agent.log, test.log)" >&2
fi
exit "$status"
