#!/usr/bin/env bash
# sk_lookup steering benchmark: connections handed by pkg/l4's sk_lookup
# program to one proxy socket in a SOCKMAP ("steered") against a server
# bound directly to the port ("bound"), both in fresh network namespaces,
# in one run. Runs BenchmarkSteering (pkg/l4/steer_bench_test.go) ROUNDS
# times and prints, per workload, the median steered/bound rate ratio and
# every round's ratio. See hack/bench/README.md.
#
# Needs root (network namespaces, BPF) and Go.
#
# Environment (all optional):
#   ROUNDS=5        benchmark runs; ratios are the median over the rounds
#                   (odd rounds run bound first, even rounds steered first)
#   BENCHTIME=2s    -benchtime of every sub-benchmark (4 per round)
#   CPU=N|off       the CPU the client and responder threads are pinned to
#                   (default: the last CPU; off: the scheduler places them,
#                   and the numbers swing with where it does)
#   QUIET=1         before each round wait (up to 30 s) until the machine
#                   uses < 0.1 cores over a second, and sample again after
#                   it; a round busy before or after, or with >= 0.15 cores
#                   of hypervisor steal, is flagged ! and left out of the
#                   medians. QUIET=0: no waiting, no flags
#   OUT_DIR=dir     keep results here (default: a new /tmp/steerbench.XXXXXX):
#                   summary.txt, round-N.txt (raw benchmark output), l4.test
#   TIMEOUT=10m     -test.timeout of each round
#
# Exits non-zero only on functional failures (the test binary does not build,
# a round fails or prints no numbers); ratios are reported, never asserted on.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/../.." && pwd)

die() { printf '[steerbench] ERROR: %s\n' "$*" >&2; exit 1; }
log() { printf '[steerbench] %s\n' "$*" >&2; }

[[ $EUID -eq 0 ]] || die "needs root (network namespaces, BPF)"
command -v go >/dev/null || die "go not found"

ROUNDS=${ROUNDS:-5}
BENCHTIME=${BENCHTIME:-2s}
QUIET=${QUIET:-1}
TIMEOUT=${TIMEOUT:-10m}
[[ -n ${CPU:-} ]] && export EDGE_AGENT_STEERBENCH_CPU=$CPU
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"

OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/steerbench.XXXXXX)}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
rm -f "$OUT_DIR"/summary.txt "$OUT_DIR"/round-*.txt

CLK_TCK=$(getconf CLK_TCK)

# cpu_sample prints "<ns> <busy ticks> <steal ticks>" from /proc/stat
# (busy: user, nice, system, irq, softirq; all CPUs).
cpu_sample() {
  local _cpu user nice system _idle _iowait irq softirq steal _rest
  read -r _cpu user nice system _idle _iowait irq softirq steal _rest </proc/stat
  echo "$(date +%s%N) $((user + nice + system + irq + softirq)) $steal"
}

# cores_between A B prints busy and steal cores between two samples.
cores_between() {
  awk -v a="$1" -v b="$2" -v hz="$CLK_TCK" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    s = (y[1] - x[1]) / 1e9
    printf "%.2f %.2f\n", (y[2] - x[2]) / hz / s, (y[3] - x[3]) / hz / s
  }'
}

# busy_now samples the machine over one second: "<busy cores> <steal cores>".
busy_now() {
  local a
  a=$(cpu_sample)
  sleep 1
  cores_between "$a" "$(cpu_sample)"
}

# wait_quiet waits up to 30 s for < 0.1 busy cores; prints the last sample.
wait_quiet() {
  local s i
  for ((i = 0; i < 30; i++)); do
    s=$(busy_now)
    awk -v b="${s%% *}" 'BEGIN { exit !(b < 0.1) }' && break
  done
  echo "$s"
}

cd "$REPO_ROOT"
log "building the pkg/l4 test binary"
go test -c -o "$OUT_DIR/l4.test" ./pkg/l4/ || die "go test -c ./pkg/l4/ failed"

# One line per round and workload: round, first, flag (! or -), workload,
# bound and steered rate, busy cores before and after, steal cores during,
# the program's ns per iteration in the steered run.
rows=$OUT_DIR/rows.txt
: >"$rows"
for ((r = 1; r <= ROUNDS; r++)); do
  first=bound
  ((r % 2 == 1)) || first=steered
  flag=
  pre="- -" post="- -" round_steal=-
  if [[ $QUIET == 1 ]]; then
    pre=$(wait_quiet)
  fi
  log "round $r/$ROUNDS ($first first, -benchtime $BENCHTIME)"
  start=$(cpu_sample)
  set +e
  (cd pkg/l4 && EDGE_AGENT_STEERBENCH_FIRST=$first "$OUT_DIR/l4.test" \
    -test.run '^$' -test.bench '^BenchmarkSteering$' -test.count=1 \
    -test.benchtime "$BENCHTIME" -test.timeout "$TIMEOUT") >"$OUT_DIR/round-$r.txt" 2>&1
  status=$?
  set -e
  end=$(cpu_sample)
  if ((status != 0)); then
    cat "$OUT_DIR/round-$r.txt" >&2
    die "round $r failed (exit $status); output in $OUT_DIR/round-$r.txt"
  fi
  if [[ $QUIET == 1 ]]; then
    post=$(busy_now)
    round_steal=$(cores_between "$start" "$end")
    round_steal=${round_steal#* }
    if awk -v a="${pre%% *}" -v b="${post%% *}" -v st="$round_steal" \
      'BEGIN { exit !(a >= 0.1 || b >= 0.1 || st >= 0.15) }'; then
      flag='!'
    fi
  fi
  # BenchmarkSteering/connect/bound-2  5320  226522 ns/op  4415 conns/s
  awk -v r="$r" -v first="$first" -v flag="${flag:--}" \
    -v pre="${pre%% *}" -v post="${post%% *}" -v steal="$round_steal" '
    $1 ~ /^BenchmarkSteering\/(connect|request)\/(bound|steered)(-[0-9]+)?$/ {
      split($1, p, "/"); sub(/-[0-9]+$/, "", p[3])
      for (i = 3; i < NF; i++) {
        if ($(i + 1) == "conns/s" || $(i + 1) == "req/s") rate[p[2], p[3]] = $i
        if ($(i + 1) == "prog-ns/op" && p[3] == "steered") prog[p[2]] = $i
      }
    }
    END {
      n = split("connect request", w, " ")
      for (i = 1; i <= n; i++) {
        if (!((w[i], "bound") in rate) || !((w[i], "steered") in rate)) { print "missing " w[i] > "/dev/stderr"; exit 1 }
        print r, first, flag, w[i], rate[w[i], "bound"], rate[w[i], "steered"], pre, post, steal, ((w[i] in prog) ? prog[w[i]] : "-")
      }
    }' "$OUT_DIR/round-$r.txt" >>"$rows" || die "round $r: no numbers in $OUT_DIR/round-$r.txt"
done

summary() {
  echo "# sk_lookup steering: steered (SOCKMAP proxy socket) vs bound (listener on the port)"
  echo "host: $(uname -r), $(nproc) CPUs, $(go env GOVERSION); $ROUNDS rounds, -benchtime $BENCHTIME, CPU ${CPU:-last}; $(date -u +%FT%TZ)"
  echo
  awk 'BEGIN { printf "%-5s %-7s  %-8s %9s %9s %-7s  %-13s  %-12s  %-17s %s\n", "round", "first", "workload", "bound", "steered", "", "steered/bound", "prog ns/op", "busy before/after", "steal (cores)" }
    { printf "%-5s %-7s  %-8s %9.0f %9.0f %-7s  %-13.3f  %-12s  %-17s %s\n", $1 ($3 == "!" ? "!" : ""), $2, $4, $5, $6,
        ($4 == "connect" ? "conns/s" : "req/s"), $6 / $5, ($10 == "-" ? "-" : sprintf("%.1f", $10)), $7 "/" $8, $9 }' "$rows"
  echo
  echo "steered/bound rate ratio (1.00 = steering costs nothing, < 1 = steered slower);"
  echo "median of the undisturbed rounds, every round in brackets (! = disturbed):"
  awk '
    function median(a, n,    i, j, t) {
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { w = $4; ratio = $6 / $5
      all[w] = all[w] sprintf(" %.3f%s", ratio, ($3 == "!" ? "!" : ""))
      if ($3 != "!") { k = ++n[w]; ratios[w, k] = ratio; b[w, k] = $5; s[w, k] = $6; pr[w, k] = $10 }
      seen[w] = 1 }
    END {
      split("connect request", order, " ")
      for (o = 1; o <= 2; o++) {
        w = order[o]; if (!(w in seen)) continue
        unit = (w == "connect") ? "conns/s" : "req/s"
        if (n[w] == 0) { printf "  %-8s no undisturbed round  [%s ]\n", w, all[w]; continue }
        delete x; for (i = 1; i <= n[w]; i++) x[i] = ratios[w, i]; mr = median(x, n[w])
        delete x; for (i = 1; i <= n[w]; i++) x[i] = b[w, i]; mb = median(x, n[w])
        delete x; for (i = 1; i <= n[w]; i++) x[i] = s[w, i]; ms = median(x, n[w])
        printf "  %-8s median %.3f  [%s ]  (median %.0f bound vs %.0f steered %s, %d rounds)\n", w, mr, all[w], mb, ms, unit, n[w]
        np = 0; delete x; for (i = 1; i <= n[w]; i++) if (pr[w, i] != "-") x[++np] = pr[w, i]
        if (np > 0) { mp = median(x, np); prog[w] = sprintf("%s %.1f ns per %s (%.2f%% of a steered %s)", w, mp, (w == "connect" ? "connection" : "request"), 100 * mp * ms / 1e9, (w == "connect" ? "connection" : "round trip")) }
      }
      if (length(prog) > 0) {
        print ""
        print "the sk_lookup program itself (kernel BPF run-time stats, steered runs; median):"
        for (o = 1; o <= 2; o++) if (order[o] in prog) print "  " prog[order[o]]
      }
    }' "$rows"
}

echo
summary | tee "$OUT_DIR/summary.txt"
echo
log "results in $OUT_DIR (summary.txt, round-N.txt)"
