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
EDGE_AGENT_DEFAULT="$REPO_ROOT/bin/edge-agent"
EDGE_AGENT=${EDGE_AGENT:-}

BODY_BYTES=100
READY_TIMEOUT_MS=10000

BENCH_TAG=bench
# shellcheck source=hack/bench/lib.sh
source "$BENCH_DIR/lib.sh"

# ---------------------------------------------------------------- prereqs ---

# find_tool NAME DEFAULT_PATH: PATH lookup, falling back to the Debian location
# (/usr/sbin is not on every user's PATH).
find_tool() { command -v "$1" 2>/dev/null || { [[ -x $2 ]] && echo "$2"; } || true; }
NGINX_BIN=${NGINX_BIN:-$(find_tool nginx /usr/sbin/nginx)}
WRK_BIN=${WRK_BIN:-$(find_tool wrk /usr/bin/wrk)}
missing=()
[[ -n $NGINX_BIN && -x $NGINX_BIN ]] || missing+=(nginx)
[[ -n $WRK_BIN && -x $WRK_BIN ]] || missing+=(wrk)
if ((${#missing[@]} > 0)); then
	printf '[bench] ERROR: %s not found (needed by the benchmark).\n' "${missing[*]}" >&2
	printf '[bench] Install with: apt-get install -y --no-install-recommends nginx wrk\n' >&2
	exit 1
fi
for tool in curl awk pgrep getconf; do
	command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found"
done

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"
[[ $NGINX_WORKERS =~ ^(auto|[1-9][0-9]*)$ ]] || die "NGINX_WORKERS must be 'auto' or a positive integer"
CLK_TCK=$(getconf CLK_TCK)

# -------------------------------------------------------- temp + cleanup ---

TMP=$(mktemp -d "${TMPDIR:-/tmp}/edge-bench.XXXXXX")
install_cleanup

# ---------------------------------------------------------------- helpers ---

# pid plus its direct children (nginx master + workers).
pid_tree() {
	echo "$1"
	pgrep -P "$1" 2>/dev/null || true
}

# ---------------------------------------------------------------- backend ---

for p in "$BACKEND_PORT" "$NGINX_PORT" "$ADMIN_PORT" "$EDGE_PORT"; do
	if port_in_use "$p"; then
		die "127.0.0.1:$p is already in use (set BACKEND_PORT/NGINX_PORT/EDGE_PORT/ADMIN_PORT)"
	fi
done

USER_DIRECTIVE="# (not root: no user directive)"
if ((EUID == 0)); then
	# As root nginx would drop workers to 'nobody', who cannot enter the
	# 0700 temp dir; keep the workers as the invoking user instead.
	USER_DIRECTIVE="user $(id -un) $(id -gn);"
fi

BODY=$(printf 'edge-agent-bench-%.0s' {1..10})
BODY=${BODY:0:BODY_BYTES}

# start_nginx NAME TEMPLATE ; sets NGINX_PID
start_nginx() {
	local name=$1 tmpl=$2 dir="$TMP/$1"
	mkdir -p "$dir"
	render "$tmpl" "$dir/nginx.conf" \
		"DIR=$dir" "USER_DIRECTIVE=$USER_DIRECTIVE" "BODY=$BODY" \
		"BACKEND_PORT=$BACKEND_PORT" "NGINX_PORT=$NGINX_PORT" "NGINX_WORKERS=$NGINX_WORKERS"
	if ! "$NGINX_BIN" -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/configtest.log" 2>&1; then
		show_log "$dir/configtest.log"
		show_log "$dir/error.log"
		die "nginx ($name) config test failed"
	fi
	"$NGINX_BIN" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
	NGINX_PID=$!
	STARTED_PIDS+=("$NGINX_PID")
}

log "temp dir: $TMP"
log "starting backend nginx on 127.0.0.1:$BACKEND_PORT"
start_nginx backend "$BENCH_DIR/backend.nginx.conf.tmpl"
BACKEND_PID=$NGINX_PID
wait_ready backend "http://127.0.0.1:$BACKEND_PORT/" "$BACKEND_PID" "$TMP/backend/error.log"
got=$(curl -sf --max-time 2 -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$BACKEND_PORT/")
[[ $got == "200 $BODY_BYTES" ]] || die "backend answered '$got', want '200 $BODY_BYTES'"

log "starting nginx proxy on 127.0.0.1:$NGINX_PORT (worker_processes $NGINX_WORKERS)"
start_nginx nginx "$BENCH_DIR/proxy.nginx.conf.tmpl"
PROXY_PID=$NGINX_PID
wait_ready nginx "http://127.0.0.1:$NGINX_PORT/" "$PROXY_PID" "$TMP/nginx/error.log"

# ------------------------------------------------------------- edge-agent ---

TARGETS=(direct nginx)
declare -A PORT=([direct]=$BACKEND_PORT [nginx]=$NGINX_PORT [edge-agent]=$EDGE_PORT)
EDGE_PID=

if [[ $SKIP_EDGE == 1 ]]; then
	log "SKIP_EDGE=1: not benchmarking edge-agent"
else
	if [[ -z $EDGE_AGENT ]]; then
		EDGE_AGENT=$EDGE_AGENT_DEFAULT
		if [[ ! -x $EDGE_AGENT ]]; then
			command -v go >/dev/null 2>&1 || die "$EDGE_AGENT missing and 'go' not found to build it"
			log "building $EDGE_AGENT"
			(cd "$REPO_ROOT" && go build -o bin/edge-agent ./cmd/edge-agent) || die "go build ./cmd/edge-agent failed"
		fi
	fi
	[[ -x $EDGE_AGENT ]] || die "edge-agent binary not found or not executable: $EDGE_AGENT"

	render "$BENCH_DIR/edge.yaml.tmpl" "$TMP/edge.yaml" \
		"ADMIN_PORT=$ADMIN_PORT" "EDGE_PORT=$EDGE_PORT" "BACKEND_PORT=$BACKEND_PORT"
	log "starting edge-agent on 127.0.0.1:$EDGE_PORT (admin 127.0.0.1:$ADMIN_PORT): $EDGE_AGENT"
	"$EDGE_AGENT" run --config "$TMP/edge.yaml" >"$TMP/edge-agent.log" 2>&1 &
	EDGE_PID=$!
	STARTED_PIDS+=("$EDGE_PID")
	wait_ready edge-agent "http://127.0.0.1:$ADMIN_PORT/readyz" "$EDGE_PID" "$TMP/edge-agent.log"
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
		log "wrk failed for $target (exit $rc); output:"
		cat "$raw" >&2
		FAILED=1
		RPS[$key]=; P50[$key]=; P99[$key]=; REQS[$key]=0; SOCKERR[$key]=-; NON2XX[$key]=-; CPU_US_REQ[$key]=
		return 0
	fi
	local rps p50 p99 reqs sock non2xx cpu=
	read -r rps p50 p99 reqs sock non2xx <<<"$parsed"
	if ((${#pids[@]} > 0 && reqs > 0)); then
		cpu=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$reqs" \
			'BEGIN { printf "%.2f", d * 1000000 / hz / n }')
	fi
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

or_na() { if [[ -n ${1:-} ]]; then printf '%s' "$1"; else printf 'n/a'; fi; }

RATIO_NAMES=(nginx/direct edge-agent/direct edge-agent/nginx "edge-agent p99/nginx p99")
declare -A RATIO

log "machine: $(nproc) cores; wrk -t$THREADS -c$CONNS -d$DURATION, warm-up $WARMUP, $ROUNDS round(s)"
for ((r = 1; r <= ROUNDS; r++)); do
	for t in "${TARGETS[@]}"; do
		measure "$r" "$t"
	done
	RATIO["$r,nginx/direct"]=$(ratio "${RPS[$r,nginx]}" "${RPS[$r,direct]}")
	RATIO["$r,edge-agent/direct"]=$(ratio "${RPS[$r,edge-agent]:-}" "${RPS[$r,direct]}")
	RATIO["$r,edge-agent/nginx"]=$(ratio "${RPS[$r,edge-agent]:-}" "${RPS[$r,nginx]}")
	RATIO["$r,edge-agent p99/nginx p99"]=$(ratio "${P99[$r,edge-agent]:-}" "${P99[$r,nginx]}")
done

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
		if [[ $name == *p99* ]]; then
			printf '  %-26s %s\n' "$name:" "$(or_na "${RATIO[$r,$name]}")"
		else
			printf '  %-26s %s\n' "$name req/s:" "$(or_na "${RATIO[$r,$name]}")"
		fi
	done
}

for ((r = 1; r <= ROUNDS; r++)); do print_round "$r"; done

declare -A MEDIAN
for name in "${RATIO_NAMES[@]}"; do
	vals=()
	for ((r = 1; r <= ROUNDS; r++)); do vals+=("${RATIO[$r,$name]}"); done
	MEDIAN[$name]=$(median "${vals[@]}")
done
printf '\n== median of %d round(s) ==\n' "$ROUNDS"
for name in "${RATIO_NAMES[@]}"; do
	if [[ $name == *p99* ]]; then
		printf '  %-26s %s\n' "$name:" "$(or_na "${MEDIAN[$name]}")"
	else
		printf '  %-26s %s\n' "$name req/s:" "$(or_na "${MEDIAN[$name]}")"
	fi
done

if [[ -n $OUT ]]; then
	jnum() { if [[ -n ${1:-} && $1 != - ]]; then printf '%s' "$1"; else printf 'null'; fi; }
	jratios() { # jratios PREFIX (PREFIX is "N," for a round, "" for medians via MEDIAN)
		local first=1 name val
		printf '{'
		for name in "${RATIO_NAMES[@]}"; do
			if [[ -n $1 ]]; then val=${RATIO[$1$name]}; else val=${MEDIAN[$name]}; fi
			((first)) || printf ', '
			first=0
			printf '"%s": %s' "$name" "$(jnum "$val")"
		done
		printf '}'
	}
	{
		printf '{\n'
		printf '  "config": {"cores": %d, "threads": %s, "connections": %s, "duration": "%s", "warmup": "%s", "rounds": %d, "nginx_workers": "%s", "body_bytes": %d},\n' \
			"$(nproc)" "$THREADS" "$CONNS" "$DURATION" "$WARMUP" "$ROUNDS" "$NGINX_WORKERS" "$BODY_BYTES"
		printf '  "latency_unit": "us",\n'
		printf '  "rounds": [\n'
		for ((r = 1; r <= ROUNDS; r++)); do
			printf '    {"round": %d, "targets": [\n' "$r"
			n=0
			for t in "${TARGETS[@]}"; do
				key="$r,$t"
				((n++ == 0)) || printf ',\n'
				printf '      {"target": "%s", "port": %s, "requests": %s, "rps": %s, "p50_us": %s, "p99_us": %s, "socket_errors": %s, "non_2xx": %s, "proxy_cpu_us_per_req": %s}' \
					"$t" "${PORT[$t]}" "$(jnum "${REQS[$key]}")" "$(jnum "${RPS[$key]}")" "$(jnum "${P50[$key]}")" \
					"$(jnum "${P99[$key]}")" "$(jnum "${SOCKERR[$key]}")" "$(jnum "${NON2XX[$key]}")" "$(jnum "${CPU_US_REQ[$key]}")"
			done
			printf '\n    ], "ratios": %s}' "$(jratios "$r,")"
			((r == ROUNDS)) || printf ','
			printf '\n'
		done
		printf '  ],\n'
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
