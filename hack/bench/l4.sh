#!/usr/bin/env bash
# L4 benchmark: client -> backends in network namespaces, three ways in one
# run: direct (routed by the node), through the in-kernel eBPF balancer
# (pkg/l4, VIP over 3 backends) and through a userspace Go TCP proxy on the
# node. Measures iperf3 throughput and short-connection HTTP rate, prints
# the ratios next to their goals. See hack/bench/README.md.
#
# Needs root (namespaces, BPF), Go and iperf3 (apt-get install iperf3).
#
# Environment (all optional):
#   OUT_DIR=dir     keep results here (default: a new /tmp/l4bench.XXXXXX):
#                   summary.txt, test.log, and per mode the iperf3 JSON,
#                   iperf3 server, proxy and load-generator logs
#   TXCSUM=on|off|both  veth TX checksum offload (default on; both = two
#                   topologies, one after the other)
#   TIME=10         iperf3 -t seconds          PARALLEL=4  iperf3 -P (1-8)
#   WORKERS=32      connection-rate workers    CONNTIME=5s connection-rate run
#   ROUNDS=1        repeat all six measurements, interleaved; ratios are
#                   the median of the rounds' (use 3+: throughput is noisy)
#   TIMEOUT=10m     go test -timeout (a round takes ~70 s per TXCSUM mode)
#   IPERF_ARGS=...  extra iperf3 -c arguments (default "-A a,b": client and
#                   server pinned to the first two CPUs; IPERF_ARGS= unpins)
#
# Exits non-zero only on functional failures (a path that does not work, an
# error answer, a backend that never answers through the VIP); performance
# numbers are reported against their goals, never asserted on.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/../.." && pwd)

die() { printf '[l4bench] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "needs root (network namespaces, BPF)"
command -v go >/dev/null || die "go not found"
command -v iperf3 >/dev/null || die "iperf3 not found (apt-get install -y iperf3)"

OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/l4bench.XXXXXX)}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
rm -f "$OUT_DIR/summary.txt"

export EDGE_AGENT_L4BENCH=1 EDGE_AGENT_L4BENCH_OUT_DIR="$OUT_DIR"
[[ -n ${TXCSUM:-} ]] && export EDGE_AGENT_L4BENCH_TXCSUM=$TXCSUM
[[ -n ${TIME:-} ]] && export EDGE_AGENT_L4BENCH_TIME=$TIME
[[ -n ${PARALLEL:-} ]] && export EDGE_AGENT_L4BENCH_PARALLEL=$PARALLEL
[[ -n ${WORKERS:-} ]] && export EDGE_AGENT_L4BENCH_WORKERS=$WORKERS
[[ -n ${CONNTIME:-} ]] && export EDGE_AGENT_L4BENCH_CONNTIME=$CONNTIME
[[ -n ${ROUNDS:-} ]] && export EDGE_AGENT_L4BENCH_ROUNDS=$ROUNDS
[[ -n ${IPERF_ARGS+set} ]] && export EDGE_AGENT_L4BENCH_IPERF_ARGS=$IPERF_ARGS

cd "$REPO_ROOT"
set +e
go test ./hack/bench/l4/ -run '^TestL4Bench$' -v -count=1 -timeout "${TIMEOUT:-10m}" 2>&1 | tee "$OUT_DIR/test.log"
status=${PIPESTATUS[0]}
set -e

echo
if ((status == 0)) && [[ -s $OUT_DIR/summary.txt ]]; then
  cat "$OUT_DIR/summary.txt"
  echo
  echo "[l4bench] results in $OUT_DIR (summary.txt, test.log, txcsum-*/)"
else
  echo "[l4bench] FAILED (exit $status); logs in $OUT_DIR (test.log, txcsum-*/)" >&2
  ((status != 0)) || status=1
fi
exit "$status"
