#!/usr/bin/env bash
# Benchmark harness: compares a bare nginx backend ("direct"), nginx as a
# reverse proxy ("nginx") and edge-agent ("edge-agent") with wrk, everything
# on 127.0.0.1. See hack/bench/README.md.
#
# Environment (all optional):
#   BACKEND_PORT=18101  NGINX_PORT=18102  EDGE_PORT=18103  ADMIN_PORT=19901
#   NGINX_WORKERS=auto  worker_processes of the nginx proxy
#   CONNS=64            wrk connections for the measured run
#   THREADS=2           wrk threads
#   DURATION=10s        length of each measured run
#   WARMUP=2s           length of the warm-up before each run (0 = none)
#   ROUNDS=1            repeat direct/nginx/edge-agent measurements N times, interleaved
#   EDGE_AGENT=path     edge-agent binary (default <repo>/bin/edge-agent, built if missing)
#   NGINX_BIN, WRK_BIN  override the nginx / wrk executables
#   SKIP_EDGE=1         benchmark only direct and nginx
#   OUT=file.json       also write the results as JSON
#   KEEP_TMP=1          keep the temp dir (configs, logs, raw wrk output)
#
# Exits non-zero if a server fails to start or any run had socket errors,
# non-2xx responses or unparsable wrk output. Performance numbers are only
# reported, never asserted on.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/../.." && pwd)

BACKEND_PORT=${BACKEND_PORT:-18101}
NGINX_PORT=${NGINX_PORT:-18102}
EDGE_PORT=${EDGE_PORT:-18103}
ADMIN_PORT=${ADMIN_PORT:-19901}
NGINX_WORKERS=${NGINX_WORKERS:-auto}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-1}
SKIP_EDGE=${SKIP_EDGE:-0}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
EDGE_AGENT=${EDGE_AGENT:-}

BODY_BYTES=100
READY_TIMEOUT_MS=10000

BENCH_TAG=bench
# shellcheck source=hack/bench/lib.sh
source "$BENCH_DIR/lib.sh"

# ---------------------------------------------------------------- prereqs ---

need_bins nginx=/usr/sbin/nginx wrk=/usr/bin/wrk
need_tools curl awk pgrep getconf

need_positive ROUNDS
[[ $NGINX_WORKERS =~ ^(auto|[1-9][0-9]*)$ ]] || die "NGINX_WORKERS must be 'auto' or a positive integer"
CLK_TCK=$(getconf CLK_TCK)

# -------------------------------------------------------- temp + cleanup ---

TMP=$(mktemp -d "${TMPDIR:-/tmp}/edge-bench.XXXXXX")
install_cleanup

# ---------------------------------------------------------------- backend ---

need_free_ports BACKEND_PORT NGINX_PORT EDGE_PORT ADMIN_PORT
BODY=$(bench_body "$BODY_BYTES")
NGINX_KEYS=("BODY=$BODY" "BACKEND_PORT=$BACKEND_PORT" "NGINX_PORT=$NGINX_PORT" "NGINX_WORKERS=$NGINX_WORKERS")

log "temp dir: $TMP"
log "starting backend nginx on 127.0.0.1:$BACKEND_PORT"
start_nginx backend "$BENCH_DIR/backend.nginx.conf.tmpl" "${NGINX_KEYS[@]}"
BACKEND_PID=$NGINX_PID
wait_ready backend "http://127.0.0.1:$BACKEND_PORT/" "$BACKEND_PID" "$TMP/backend/error.log"
got=$(curl -sf --max-time 2 -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$BACKEND_PORT/")
[[ $got == "200 $BODY_BYTES" ]] || die "backend answered '$got', want '200 $BODY_BYTES'"

log "starting nginx proxy on 127.0.0.1:$NGINX_PORT (worker_processes $NGINX_WORKERS)"
start_nginx nginx "$BENCH_DIR/proxy.nginx.conf.tmpl" "${NGINX_KEYS[@]}"
PROXY_PID=$NGINX_PID
wait_ready nginx "http://127.0.0.1:$NGINX_PORT/" "$PROXY_PID" "$TMP/nginx/error.log"

# ------------------------------------------------------------- edge-agent ---

TARGETS=(direct nginx)
declare -A PORT=([direct]=$BACKEND_PORT [nginx]=$NGINX_PORT [edge-agent]=$EDGE_PORT)
EDGE_PID=

if [[ $SKIP_EDGE == 1 ]]; then
	log "SKIP_EDGE=1: not benchmarking edge-agent"
else
	need_edge_agent go build -o bin/edge-agent ./cmd/edge-agent
	render "$BENCH_DIR/edge.yaml.tmpl" "$TMP/edge.yaml" \
		"ADMIN_PORT=$ADMIN_PORT" "EDGE_PORT=$EDGE_PORT" "BACKEND_PORT=$BACKEND_PORT"
	start_edge_agent "$TMP/edge.yaml"
	wait_ready edge-agent "http://127.0.0.1:$EDGE_PORT/" "$EDGE_PID" "$TMP/edge-agent.log"
	got=$(curl -sf --max-time 2 -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$EDGE_PORT/") || got="request failed"
	[[ $got == "200 $BODY_BYTES" ]] || die "edge-agent answered '$got', want '200 $BODY_BYTES'"
	TARGETS+=(edge-agent)
fi

# ------------------------------------------------------------ measurement ---

# Results, keyed "ROUND,TARGET".
declare -A RPS P50 P99 REQS SOCKERR NON2XX CPU_US_REQ
FAILED=0

# measure ROUND TARGET
measure() {
	local round=$1 target=$2 port=${PORT[$2]} url raw rc=0 parsed
	local -a pids=()
	url="http://127.0.0.1:$port/"
	raw="$TMP/wrk.$round.$target.txt"

	if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
		run_wrk "$TMP/warmup.$round.$target.txt" -t"$THREADS" -c64 -d"$WARMUP" "$url" || true
	fi

	case $target in
	nginx) mapfile -t pids < <(pid_tree "$PROXY_PID") ;;
	edge-agent) pids=("$EDGE_PID") ;;
	esac
	local before=0 after=0
	((${#pids[@]} == 0)) || before=$(cpu_ticks "${pids[@]}")

	log "round $round: $target: wrk -t$THREADS -c$CONNS -d$DURATION --latency $url"
	run_wrk "$raw" -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$url" || rc=$?

	((${#pids[@]} == 0)) || after=$(cpu_ticks "${pids[@]}")

	local key="$round,$target"
	if ((rc != 0)) || ! parsed=$(parse_wrk "$raw"); then
		run_failed wrk "$target" "$rc" "$raw"
		RPS[$key]=; P50[$key]=; P99[$key]=; REQS[$key]=0; SOCKERR[$key]=-; NON2XX[$key]=-; CPU_US_REQ[$key]=
		return 0
	fi
	local rps p50 p99 reqs sock non2xx cpu=
	read -r rps p50 p99 reqs sock non2xx <<<"$parsed"
	if ((${#pids[@]} > 0 && reqs > 0)); then
		cpu=$(per_req $((after - before)) "$reqs" 2)
	fi
	# shellcheck disable=SC2034 # REQS is read by name, by json_rounds
	RPS[$key]=$rps P50[$key]=$p50 P99[$key]=$p99 REQS[$key]=$reqs
	SOCKERR[$key]=$sock NON2XX[$key]=$non2xx CPU_US_REQ[$key]=$cpu
	if ((sock > 0 || non2xx > 0)); then
		log "$target: $sock socket errors, $non2xx non-2xx responses"
		FAILED=1
	fi
	if ((${#pids[@]} > 0)) && ! kill -0 "${pids[0]}" 2>/dev/null; then
		log "$target died during the run"
		FAILED=1
	fi
}

RATIO_NAMES=("${PROXY_RATIO_NAMES[@]}")
declare -A RATIO

log "machine: $(nproc) cores; wrk -t$THREADS -c$CONNS -d$DURATION, warm-up $WARMUP, $ROUNDS round(s)"
run_rounds proxy_ratios

# ----------------------------------------------------------------- report ---

print_round() {
	local r=$1 t key name
	printf '\n== round %d/%d (wrk -t%s -c%s -d%s, %s cores) ==\n' "$r" "$ROUNDS" "$THREADS" "$CONNS" "$DURATION" "$(nproc)"
	printf '%-11s %12s %10s %10s %9s %8s %16s\n' target 'req/s' 'p50 (us)' 'p99 (us)' 'sock err' 'non-2xx' 'proxy CPU us/req'
	for t in "${TARGETS[@]}"; do
		key="$r,$t"
		printf '%-11s %12s %10s %10s %9s %8s %16s\n' "$t" "$(or_na "${RPS[$key]}")" \
			"$(or_na "${P50[$key]}")" "$(or_na "${P99[$key]}")" "${SOCKERR[$key]}" "${NON2XX[$key]}" \
			"$(if [[ $t == direct ]]; then echo -; else or_na "${CPU_US_REQ[$key]}"; fi)"
	done
	for name in "${RATIO_NAMES[@]}"; do
		printf '  %-26s %s\n' "$(ratio_label "$name")" "$(or_na "${RATIO[$r,$name]}")"
	done
}

for ((r = 1; r <= ROUNDS; r++)); do print_round "$r"; done

# Medians over all rounds (run.sh flags none).
USE_ROUNDS=()
for ((r = 1; r <= ROUNDS; r++)); do USE_ROUNDS+=("$r"); done
median_ratios
printf '\n== median of %d round(s) ==\n' "$ROUNDS"
for name in "${RATIO_NAMES[@]}"; do
	printf '  %-26s %s\n' "$(ratio_label "$name")" "$(or_na "${MEDIAN[$name]}")"
done

if [[ -n $OUT ]]; then
	{
		printf '{\n'
		printf '  "config": {"cores": %d, "threads": %s, "connections": %s, "duration": "%s", "warmup": "%s", "rounds": %d, "nginx_workers": "%s", "body_bytes": %d},\n' \
			"$(nproc)" "$THREADS" "$CONNS" "$DURATION" "$WARMUP" "$ROUNDS" "$NGINX_WORKERS" "$BODY_BYTES"
		json_rounds port=PORT requests=REQS rps=RPS p50_us=P50 p99_us=P99 socket_errors=SOCKERR \
			non_2xx=NON2XX proxy_cpu_us_per_req=CPU_US_REQ
		printf '  "median_ratios": %s,\n' "$(jratios "")"
		printf '  "ok": %s\n' "$( ((FAILED == 0)) && echo true || echo false)"
		printf '}\n'
	} >"$OUT"
	log "wrote $OUT"
fi

if ((FAILED)); then
	log "FAILED: at least one run had errors (see above)"
	exit 1
fi
