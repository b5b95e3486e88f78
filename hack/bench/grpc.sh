#!/usr/bin/env bash
# gRPC benchmark: unary calls to a grpc-go server (hack/bench/grpcserver)
# reached directly ("direct"), through nginx grpc_pass ("nginx") and through
# edge-agent ("edge-agent"), with ghz as the load generator, everything on
# 127.0.0.1, plaintext h2c. See hack/bench/README.md.
#
# Environment (all optional):
#   SERVER_PORT=18111  NGINX_PORT=18112  EDGE_PORT=18113  ADMIN_PORT=19913
#   NGINX_WORKERS=auto  worker_processes of the nginx proxy
#   CONCURRENCY=64      ghz -c: calls in flight
#   CONNECTIONS=1       ghz --connections: HTTP/2 connections they share
#   DURATION=10s        length of each measured run
#   WARMUP=2s           length of the warm-up before each run (0 = none)
#   ROUNDS=1            repeat direct/nginx/edge-agent measurements N times, interleaved
#   RESPONSE_BYTES=100  payload size of each response
#   GHZ_VERSION=v0.120.0  version `go install`ed when ghz is not found
#   EDGE_AGENT=path     edge-agent binary (default <repo>/bin/edge-agent, built if missing)
#   NGINX_BIN, GHZ_BIN  override the nginx / ghz executables
#   SKIP_EDGE=1         benchmark only direct and nginx
#   OUT=file.json       also write the results as JSON
#   KEEP_TMP=1          keep the temp dir (configs, logs, raw ghz output)
#   QUIET=1             before each measurement wait (up to 30 s) until the
#                       machine uses < 0.1 cores, and count the CPU that
#                       processes other than the benchmark's used during it; a
#                       round in which that was >= 0.1 cores, or hypervisor
#                       steal >= 0.15 cores, is flagged ! and left out of the
#                       medians. QUIET=0: no waiting, no flags
#
# Installs nothing except ghz, with `go install` into $(go env GOPATH)/bin,
# and only when it is neither on PATH nor there already.
#
# Exits non-zero if a server fails to start or any run had failed calls
# (status other than OK) or unparsable ghz output. Performance numbers are
# only reported, never asserted on.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/../.." && pwd)

SERVER_PORT=${SERVER_PORT:-18111}
NGINX_PORT=${NGINX_PORT:-18112}
EDGE_PORT=${EDGE_PORT:-18113}
ADMIN_PORT=${ADMIN_PORT:-19913}
NGINX_WORKERS=${NGINX_WORKERS:-auto}
CONCURRENCY=${CONCURRENCY:-64}
CONNECTIONS=${CONNECTIONS:-1}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-1}
RESPONSE_BYTES=${RESPONSE_BYTES:-100}
GHZ_VERSION=${GHZ_VERSION:-v0.120.0}
SKIP_EDGE=${SKIP_EDGE:-0}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
QUIET=${QUIET:-1}
EDGE_AGENT=${EDGE_AGENT:-}

CALL=grpc.testing.TestService/UnaryCall
READY_TIMEOUT_MS=10000

BENCH_TAG=bench-grpc
# shellcheck source=hack/bench/lib.sh
source "$BENCH_DIR/lib.sh"

# ---------------------------------------------------------------- prereqs ---

need_positive ROUNDS CONCURRENCY CONNECTIONS
((CONNECTIONS <= CONCURRENCY)) || die "CONNECTIONS ($CONNECTIONS) must not exceed CONCURRENCY ($CONCURRENCY)"
[[ $RESPONSE_BYTES =~ ^[0-9]+$ ]] || die "RESPONSE_BYTES must be a non-negative integer"
[[ $NGINX_WORKERS =~ ^(auto|[1-9][0-9]*)$ ]] || die "NGINX_WORKERS must be 'auto' or a positive integer"
need_flag QUIET
need_tools go curl awk pgrep getconf
CLK_TCK=$(getconf CLK_TCK)

need_bins nginx=/usr/sbin/nginx
# grpc_pass needs HTTP/2 on the client side (ngx_http_v2_module, not built by
# default from source) and ngx_http_grpc_module (built unless disabled).
NGINX_V=$("$NGINX_BIN" -V 2>&1) || die "'$NGINX_BIN -V' failed: $NGINX_V"
if [[ $NGINX_V != *--with-http_v2_module* ]]; then
	die "$NGINX_BIN was built without HTTP/2 (no --with-http_v2_module in 'nginx -V'); grpc_pass needs it. Use a build with HTTP/2, e.g. Debian's nginx package, via NGINX_BIN=..."
fi
if [[ $NGINX_V == *--without-http_grpc_module* ]]; then
	die "$NGINX_BIN was built --without-http_grpc_module; grpc_pass needs it"
fi
NGINX_VERSION=$(sed -n 's|^nginx version: [^/]*/\([0-9.]*\).*|\1|p' <<<"$NGINX_V" | head -n 1)
[[ $NGINX_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "cannot read the nginx version from '$NGINX_BIN -V'"
# "listen ... http2" is deprecated since 1.25.1 in favour of "http2 on;".
IFS=. read -r nv_major nv_minor nv_patch <<<"$NGINX_VERSION"
if ((nv_major * 1000000 + nv_minor * 1000 + nv_patch >= 1025001)); then
	LISTEN_HTTP2="" HTTP2_ON="http2 on;"
else
	LISTEN_HTTP2=" http2" HTTP2_ON="# nginx $NGINX_VERSION: HTTP/2 is the listen parameter"
fi

GOBIN_DIR="$(go env GOPATH)/bin"
GHZ_BIN=${GHZ_BIN:-$(find_tool ghz "$GOBIN_DIR/ghz")}
if [[ -z $GHZ_BIN ]]; then
	log "ghz not found: go install github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION (into $GOBIN_DIR)"
	# Outside the module, so go.mod is never touched.
	(cd / && GOBIN=$GOBIN_DIR go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION") ||
		die "go install github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION failed"
	GHZ_BIN="$GOBIN_DIR/ghz"
fi
[[ -x $GHZ_BIN ]] || die "ghz not executable: $GHZ_BIN"

# -------------------------------------------------------- temp + cleanup ---

TMP=$(mktemp -d "${TMPDIR:-/tmp}/edge-bench-grpc.XXXXXX")
install_cleanup

# ---------------------------------------------------------------- helpers ---

# probe PORT: one UnaryCall through 127.0.0.1:PORT, checking the payload size.
probe() { "$GRPCSERVER" -probe "127.0.0.1:$1" -size "$RESPONSE_BYTES" -timeout 1s; }

# run_ghz OUTFILE ARGS...: run_load with $GHZ_BIN.
run_ghz() { run_load "$1" "$GHZ_BIN" "${@:2}"; }

# children_ms: user+system CPU of this shell's waited-for children, in ms
# (the second line of the 'times' builtin). Call it as `children_ms; x=$REPLY`:
# in a $(...) subshell 'times' would see the subshell's children only.
children_ms() {
	times >"$TMP/times"
	REPLY=$(awk 'NR == 2 {
		n = split($0, f, " "); t = 0
		for (i = 1; i <= n; i++) { split(f[i], p, "m"); t += p[1] * 60000 + (p[2] + 0) * 1000 }
		printf "%d", t }' "$TMP/times")
}

# ----------------------------------------------------------------- server ---

need_free_ports SERVER_PORT NGINX_PORT EDGE_PORT ADMIN_PORT

GHZ_MOD_VERSION=$({ go version -m "$GHZ_BIN" 2>/dev/null || true; } | awk '$1 == "mod" { print $3; exit }')
GHZ_MOD_VERSION=${GHZ_MOD_VERSION:-unknown}
log "temp dir: $TMP"
log "ghz: $GHZ_BIN ($GHZ_MOD_VERSION)"
GRPCSERVER="$TMP/grpcserver"
log "building hack/bench/grpcserver"
(cd "$REPO_ROOT" && go build -o "$GRPCSERVER" ./hack/bench/grpcserver) || die "go build ./hack/bench/grpcserver failed"

log "starting grpcserver on 127.0.0.1:$SERVER_PORT"
"$GRPCSERVER" -addr "127.0.0.1:$SERVER_PORT" >"$TMP/grpcserver.log" 2>&1 &
SERVER_PID=$!
STARTED_PIDS+=("$SERVER_PID")
wait_until grpcserver "$SERVER_PID" "$TMP/grpcserver.log" "(UnaryCall on 127.0.0.1:$SERVER_PORT)" probe "$SERVER_PORT"

# ------------------------------------------------------------------ nginx ---

log "starting nginx $NGINX_VERSION grpc_pass on 127.0.0.1:$NGINX_PORT (worker_processes $NGINX_WORKERS)"
start_nginx nginx "$BENCH_DIR/grpc.nginx.conf.tmpl" "SERVER_PORT=$SERVER_PORT" \
	"NGINX_PORT=$NGINX_PORT" "NGINX_WORKERS=$NGINX_WORKERS" \
	"LISTEN_HTTP2=$LISTEN_HTTP2" "HTTP2_ON=$HTTP2_ON"
PROXY_PID=$NGINX_PID
wait_until nginx "$PROXY_PID" "$TMP/nginx/error.log" "(UnaryCall via 127.0.0.1:$NGINX_PORT)" probe "$NGINX_PORT"

# ------------------------------------------------------------- edge-agent ---

TARGETS=(direct nginx)
declare -A PORT=([direct]=$SERVER_PORT [nginx]=$NGINX_PORT [edge-agent]=$EDGE_PORT)
EDGE_PID=

if [[ $SKIP_EDGE == 1 ]]; then
	log "SKIP_EDGE=1: not benchmarking edge-agent"
else
	need_edge_agent go build -o bin/edge-agent ./cmd/edge-agent
	render "$BENCH_DIR/grpc.edge.yaml.tmpl" "$TMP/edge.yaml" \
		"ADMIN_PORT=$ADMIN_PORT" "EDGE_PORT=$EDGE_PORT" "SERVER_PORT=$SERVER_PORT"
	start_edge_agent "$TMP/edge.yaml"
	wait_until edge-agent "$EDGE_PID" "$TMP/edge-agent.log" "(UnaryCall via 127.0.0.1:$EDGE_PORT)" probe "$EDGE_PORT"
	TARGETS+=(edge-agent)
fi

# ------------------------------------------------------------ measurement ---

# Results, keyed "ROUND,TARGET".
declare -A RPS P50 P99 CALLS ERRS PROXY_CPU SERVER_CPU GHZ_CPU OTHER STEAL DISTURBED
FAILED=0

# parse_ghz FILE -> "rps p50_us p99_us calls non_ok" (or "" if unparsable).
# ghz's summary prints latencies as "N ns", "N.NN ms" or "N.NN s"; they
# cover the OK calls only. Calls still in flight when the duration ends are
# not counted (--duration-stop ignore).
parse_ghz() {
	awk '
	function us(v, u) {
		if (u == "ns") return v / 1000
		if (u == "ms") return v * 1000
		if (u == "s")  return v * 1000000
		return -1
	}
	/^Status code distribution:/    { codes = 1; next }
	/^Error distribution:/          { codes = 0 }
	/^  Count:/                     { count = $2 }
	/^  Requests\/sec:/             { rps = $2 }
	/^  50 % in /                   { p50 = us($4, $5) }
	/^  99 % in /                   { p99 = us($4, $5) }
	codes && /^  \[[A-Za-z]+\]/     { if ($1 == "[OK]") ok += $2; else bad += $2 }
	END {
		if (count == "" || rps == "" || p50 == "" || p99 == "" || p50 < 0 || p99 < 0) exit 1
		if (ok + bad != count) exit 1
		printf "%s %.1f %.1f %d %d\n", rps, p50, p99, count, bad
	}' "$1"
}

GHZ_COMMON=(--insecure --call "$CALL" -d "{\"response_size\": $RESPONSE_BYTES}"
	-c "$CONCURRENCY" --connections "$CONNECTIONS" --duration-stop ignore -t 5s)

# measure ROUND TARGET
measure() {
	local round=$1 target=$2 addr="127.0.0.1:${PORT[$2]}" raw rc=0 parsed
	local -a pids=()
	raw="$TMP/ghz.$round.$target.txt"

	if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
		run_ghz "$TMP/warmup.$round.$target.txt" "${GHZ_COMMON[@]}" -z "$WARMUP" "$addr" || true
	fi

	case $target in
	nginx) mapfile -t pids < <(pid_tree "$PROXY_PID") ;;
	edge-agent) pids=("$EDGE_PID") ;;
	esac
	# The benchmark's own processes besides this shell: the server and both
	# proxies (idle but for the target).
	local -a ours=()
	mapfile -t ours < <(
		echo "$SERVER_PID"
		pid_tree "$PROXY_PID"
		[[ -z $EDGE_PID ]] || echo "$EDGE_PID"
	)
	local key="$round,$target" before=0 after=0 sbefore safter gbefore gafter

	disturb_prepare "${ours[@]}"
	((${#pids[@]} == 0)) || before=$(cpu_ticks "${pids[@]}")
	sbefore=$(cpu_ticks "$SERVER_PID")
	disturb_begin children_ms # ghz's CPU: this shell's children's, sampled inside
	gbefore=$REPLY

	log "round $round: $target: ghz -c $CONCURRENCY --connections $CONNECTIONS -z $DURATION $addr"
	run_ghz "$raw" "${GHZ_COMMON[@]}" -z "$DURATION" "$addr" || rc=$?

	disturb_end children_ms
	gafter=$REPLY
	((${#pids[@]} == 0)) || after=$(cpu_ticks "${pids[@]}")
	safter=$(cpu_ticks "$SERVER_PID")
	disturb_record "$key" "$round" "$target"

	if ((rc != 0)) || ! parsed=$(parse_ghz "$raw"); then
		run_failed ghz "$target" "$rc" "$raw"
		RPS[$key]=; P50[$key]=; P99[$key]=; CALLS[$key]=0; ERRS[$key]=-; PROXY_CPU[$key]=; SERVER_CPU[$key]=; GHZ_CPU[$key]=
		return 0
	fi
	local rps p50 p99 calls errs
	read -r rps p50 p99 calls errs <<<"$parsed"
	# shellcheck disable=SC2034 # CALLS is read by name, by json_rounds
	RPS[$key]=$rps P50[$key]=$p50 P99[$key]=$p99 CALLS[$key]=$calls ERRS[$key]=$errs
	PROXY_CPU[$key]=
	((${#pids[@]} == 0)) || PROXY_CPU[$key]=$(per_req $((after - before)) "$calls" 2)
	SERVER_CPU[$key]=$(per_req $((safter - sbefore)) "$calls" 2)
	GHZ_CPU[$key]=$(awk -v ms=$((gafter - gbefore)) -v n="$calls" 'BEGIN { if (n > 0) printf "%.2f", ms * 1000 / n }')
	if ((errs > 0)); then
		log "$target: $errs of $calls calls failed:"
		sed -n '/^Status code distribution:/,$p' "$raw" >&2
		FAILED=1
	fi
	if ((${#pids[@]} > 0)) && ! kill -0 "${pids[0]}" 2>/dev/null; then
		log "$target died during the run"
		FAILED=1
	fi
}

RATIO_NAMES=("${PROXY_RATIO_NAMES[@]}")
declare -A RATIO

warn_other_loadgens

LOADDESC="ghz -c $CONCURRENCY --connections $CONNECTIONS -z $DURATION, $RESPONSE_BYTES-byte responses"
log "machine: $(nproc) cores; $LOADDESC, warm-up $WARMUP, $ROUNDS round(s)"
run_rounds proxy_ratios

# ----------------------------------------------------------------- report ---

# A round is disturbed (!) if any of its measurements was; medians use the
# undisturbed rounds, or every round if none was.
median_rounds

print_round() {
	local r=$1 t key name flag=""
	if ((ROUND_BAD[$r])); then flag="  ! disturbed, not in the medians"; fi
	printf '\n== round %d/%d (%s, %s cores)%s ==\n' "$r" "$ROUNDS" "$LOADDESC" "$(nproc)" "$flag"
	printf '%-11s %10s %9s %9s %7s %10s %10s %10s %7s %6s\n' target 'req/s' 'p50 (us)' 'p99 (us)' 'non-OK' \
		'proxy CPU' 'server CPU' 'ghz CPU' 'other' 'steal'
	printf '%-11s %10s %9s %9s %7s %10s %10s %10s %7s %6s\n' '' '' '' '' '' 'us/req' 'us/req' 'us/req' 'cores' 'cores'
	for t in "${TARGETS[@]}"; do
		key="$r,$t"
		printf '%-11s %10s %9s %9s %7s %10s %10s %10s %7s %6s\n' "$t" "$(or_na "${RPS[$key]}")" \
			"$(or_na "${P50[$key]}")" "$(or_na "${P99[$key]}")" "${ERRS[$key]}" \
			"$(if [[ $t == direct ]]; then echo -; else or_na "${PROXY_CPU[$key]}"; fi)" \
			"$(or_na "${SERVER_CPU[$key]}")" "$(or_na "${GHZ_CPU[$key]}")" \
			"$(or_na "${OTHER[$key]}")$(bang "${DISTURBED[$key]}")" "$(or_na "${STEAL[$key]}")"
	done
	for name in "${RATIO_NAMES[@]}"; do
		printf '  %-26s %s\n' "$(ratio_label "$name")" "$(or_na "${RATIO[$r,$name]}")"
	done
}

for ((r = 1; r <= ROUNDS; r++)); do print_round "$r"; done

median_ratios
declare -A MED_RPS MED_P99
for t in "${TARGETS[@]}"; do
	MED_RPS[$t]=$(target_median RPS "$t")
	MED_P99[$t]=$(target_median P99 "$t")
done

printf '\n== medians (%s) ==\n' "$MEDIAN_NOTE"
printf '%-11s %10s %9s\n' target 'req/s' 'p99 (us)'
for t in "${TARGETS[@]}"; do
	printf '%-11s %10s %9s\n' "$t" "$(or_na "${MED_RPS[$t]}")" "$(or_na "${MED_P99[$t]}")"
done
for name in "${RATIO_NAMES[@]}"; do
	printf '  %-26s %s   (rounds: %s)\n' "$(ratio_label "$name")" "$(or_na "${MEDIAN[$name]}")" "$(rounds_line "$name")"
done
if [[ -n ${MEDIAN[edge-agent/nginx]} ]]; then
	printf '  goal edge-agent/nginx req/s >= 1: %s (reported, not asserted)\n' \
		"$(awk -v m="${MEDIAN[edge-agent/nginx]}" 'BEGIN { print (m >= 1 ? "met" : "missed") }')"
fi

if [[ -n $OUT ]]; then
	{
		printf '{\n'
		printf '  "config": {"cores": %d, "load_generator": "ghz %s", "call": "%s", "concurrency": %s, "connections": %s, "duration": "%s", "warmup": "%s", "rounds": %d, "nginx_version": "%s", "nginx_workers": "%s", "response_bytes": %d, "quiet": %s},\n' \
			"$(nproc)" "$GHZ_MOD_VERSION" "$CALL" "$CONCURRENCY" "$CONNECTIONS" "$DURATION" "$WARMUP" \
			"$ROUNDS" "$NGINX_VERSION" "$NGINX_WORKERS" "$RESPONSE_BYTES" "$(jbool "$QUIET")"
		json_rounds --disturbed port=PORT calls=CALLS rps=RPS p50_us=P50 p99_us=P99 non_ok=ERRS \
			proxy_cpu_us_per_req=PROXY_CPU server_cpu_us_per_req=SERVER_CPU ghz_cpu_us_per_req=GHZ_CPU \
			other_cores=OTHER steal_cores=STEAL disturbed=bool:DISTURBED
		json_medians rps=MED_RPS p99_us=MED_P99
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
