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
EDGE_AGENT_DEFAULT="$REPO_ROOT/bin/edge-agent"
EDGE_AGENT=${EDGE_AGENT:-}

CALL=grpc.testing.TestService/UnaryCall
READY_TIMEOUT_MS=10000

BENCH_TAG=bench-grpc
# shellcheck source=hack/bench/lib.sh
source "$BENCH_DIR/lib.sh"

# ---------------------------------------------------------------- prereqs ---

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"
[[ $CONCURRENCY =~ ^[1-9][0-9]*$ ]] || die "CONCURRENCY must be a positive integer, got '$CONCURRENCY'"
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a positive integer, got '$CONNECTIONS'"
((CONNECTIONS <= CONCURRENCY)) || die "CONNECTIONS ($CONNECTIONS) must not exceed CONCURRENCY ($CONCURRENCY)"
[[ $RESPONSE_BYTES =~ ^[0-9]+$ ]] || die "RESPONSE_BYTES must be a non-negative integer"
[[ $NGINX_WORKERS =~ ^(auto|[1-9][0-9]*)$ ]] || die "NGINX_WORKERS must be 'auto' or a positive integer"
[[ $QUIET == 0 || $QUIET == 1 ]] || die "QUIET must be 0 or 1"
for tool in go curl awk pgrep getconf; do
	command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found"
done
CLK_TCK=$(getconf CLK_TCK)

# find_tool NAME DEFAULT_PATH: PATH lookup, falling back to DEFAULT_PATH.
find_tool() { command -v "$1" 2>/dev/null || { [[ -x $2 ]] && echo "$2"; } || true; }

NGINX_BIN=${NGINX_BIN:-$(find_tool nginx /usr/sbin/nginx)}
if [[ -z $NGINX_BIN || ! -x $NGINX_BIN ]]; then
	die "nginx not found (needed by the benchmark). Install with: apt-get install -y --no-install-recommends nginx"
fi
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

# wait_until NAME PID LOGFILE WHAT CMD...: run CMD until it succeeds, for up
# to READY_TIMEOUT_MS, failing early if PID exits.
wait_until() {
	local name=$1 pid=$2 logfile=$3 what=$4 deadline rc
	shift 4
	deadline=$(($(now_ms) + READY_TIMEOUT_MS))
	while (($(now_ms) < deadline)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			rc=0
			wait "$pid" 2>/dev/null || rc=$?
			show_log "$logfile"
			die "$name exited during startup (exit status $rc)"
		fi
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	show_log "$logfile"
	"$@" >&2 || true # show why the last try failed
	die "$name not ready ($what) after $((READY_TIMEOUT_MS / 1000))s"
}

# probe PORT: one UnaryCall through 127.0.0.1:PORT, checking the payload size.
probe() { "$GRPCSERVER" -probe "127.0.0.1:$1" -size "$RESPONSE_BYTES" -timeout 1s; }

# run_ghz OUTFILE ARGS...: run ghz in the background and wait for it, so that
# INT/TERM are handled (and ghz killed by cleanup) without waiting for the
# whole run to finish. Returns ghz's exit status.
run_ghz() {
	local out=$1 rc=0
	shift
	"$GHZ_BIN" "$@" >"$out" 2>&1 &
	LOADGEN_PID=$!
	wait "$LOADGEN_PID" || rc=$?
	LOADGEN_PID=
	return "$rc"
}

# Sum of utime+stime (clock ticks) over the given pids.
cpu_ticks() {
	local total=0 pid stat rest
	local -a f
	for pid in "$@"; do
		stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
		rest=${stat##*) } # comm may contain spaces; fields after it start at #3
		read -r -a f <<<"$rest"
		total=$((total + f[11] + f[12])) # fields 14 (utime) and 15 (stime)
	done
	echo "$total"
}

# pid plus its direct children (nginx master + workers).
pid_tree() {
	echo "$1"
	pgrep -P "$1" 2>/dev/null || true
}

# machine_sample: "<ms> <busy ticks> <steal ticks>" from /proc/stat, all CPUs;
# busy is user + nice + system + irq + softirq (this kernel's tick-based
# accounting charges softirq ticks to the task they interrupted as well).
machine_sample() {
	local _cpu user nice system _idle _iowait irq softirq steal _rest
	read -r _cpu user nice system _idle _iowait irq softirq steal _rest </proc/stat
	echo "$(now_ms) $((user + nice + system + irq + softirq)) $steal"
}

# busy_cores: machine CPU over one second, in cores.
busy_cores() {
	local a b
	read -r -a a <<<"$(machine_sample)"
	sleep 1
	read -r -a b <<<"$(machine_sample)"
	awk -v t=$((b[1] - a[1])) -v ms=$((b[0] - a[0])) -v hz="$CLK_TCK" \
		'BEGIN { printf "%.2f", t / hz / (ms / 1000) }'
}

# wait_quiet: wait up to 30 s for a second with < 0.1 busy cores.
wait_quiet() {
	local i c
	for ((i = 0; i < 30; i++)); do
		c=$(busy_cores)
		awk -v c="$c" 'BEGIN { exit !(c < 0.1) }' && return 0
	done
	log "machine still busy ($c cores) after 30 s; measuring anyway (the round will likely be flagged)"
}

# foreign_ticks PID...: utime + stime + cutime + cstime (clock ticks) summed
# over every process but the given ones. A process's CPU moves into its
# parent's cutime/cstime when the parent reaps it, so the sum also catches
# short-lived processes (a build's compiler runs) that start and end between
# two samples. Loopback softirq work that lands on an idle CPU is charged to
# no process, so unlike the machine's busy time this is not inflated by the
# benchmark's own traffic.
foreign_ticks() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v skip=" $* " '{
		if (index(skip, " " $1 " ")) next
		sub(/^.*\) /, "")
		t += $12 + $13 + $14 + $15
	} END { printf "%d", t }'
}

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

for p in "$SERVER_PORT" "$NGINX_PORT" "$ADMIN_PORT" "$EDGE_PORT"; do
	if port_in_use "$p"; then
		die "127.0.0.1:$p is already in use (set SERVER_PORT/NGINX_PORT/EDGE_PORT/ADMIN_PORT)"
	fi
done

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
wait_until grpcserver "$SERVER_PID" "$TMP/grpcserver.log" "UnaryCall on 127.0.0.1:$SERVER_PORT" probe "$SERVER_PORT"

# ------------------------------------------------------------------ nginx ---

USER_DIRECTIVE="# (not root: no user directive)"
if ((EUID == 0)); then
	# As root nginx would drop workers to 'nobody', who cannot enter the
	# 0700 temp dir; keep the workers as the invoking user instead.
	USER_DIRECTIVE="user $(id -un) $(id -gn);"
fi

dir="$TMP/nginx"
mkdir -p "$dir"
render "$BENCH_DIR/grpc.nginx.conf.tmpl" "$dir/nginx.conf" \
	"DIR=$dir" "USER_DIRECTIVE=$USER_DIRECTIVE" "SERVER_PORT=$SERVER_PORT" \
	"NGINX_PORT=$NGINX_PORT" "NGINX_WORKERS=$NGINX_WORKERS" \
	"LISTEN_HTTP2=$LISTEN_HTTP2" "HTTP2_ON=$HTTP2_ON"
if ! "$NGINX_BIN" -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/configtest.log" 2>&1; then
	show_log "$dir/configtest.log"
	show_log "$dir/error.log"
	die "nginx config test failed"
fi
log "starting nginx $NGINX_VERSION grpc_pass on 127.0.0.1:$NGINX_PORT (worker_processes $NGINX_WORKERS)"
"$NGINX_BIN" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
PROXY_PID=$!
STARTED_PIDS+=("$PROXY_PID")
wait_until nginx "$PROXY_PID" "$dir/error.log" "UnaryCall via 127.0.0.1:$NGINX_PORT" probe "$NGINX_PORT"

# ------------------------------------------------------------- edge-agent ---

TARGETS=(direct nginx)
declare -A PORT=([direct]=$SERVER_PORT [nginx]=$NGINX_PORT [edge-agent]=$EDGE_PORT)
EDGE_PID=

if [[ $SKIP_EDGE == 1 ]]; then
	log "SKIP_EDGE=1: not benchmarking edge-agent"
else
	if [[ -z $EDGE_AGENT ]]; then
		EDGE_AGENT=$EDGE_AGENT_DEFAULT
		if [[ ! -x $EDGE_AGENT ]]; then
			log "building $EDGE_AGENT"
			(cd "$REPO_ROOT" && go build -o bin/edge-agent ./cmd/edge-agent) || die "go build ./cmd/edge-agent failed"
		fi
	fi
	[[ -x $EDGE_AGENT ]] || die "edge-agent binary not found or not executable: $EDGE_AGENT"

	render "$BENCH_DIR/grpc.edge.yaml.tmpl" "$TMP/edge.yaml" \
		"ADMIN_PORT=$ADMIN_PORT" "EDGE_PORT=$EDGE_PORT" "SERVER_PORT=$SERVER_PORT"
	log "starting edge-agent on 127.0.0.1:$EDGE_PORT (admin 127.0.0.1:$ADMIN_PORT): $EDGE_AGENT"
	"$EDGE_AGENT" run --config "$TMP/edge.yaml" >"$TMP/edge-agent.log" 2>&1 &
	EDGE_PID=$!
	STARTED_PIDS+=("$EDGE_PID")
	wait_until edge-agent "$EDGE_PID" "$TMP/edge-agent.log" "http://127.0.0.1:$ADMIN_PORT/readyz" \
		curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$ADMIN_PORT/readyz"
	wait_until edge-agent "$EDGE_PID" "$TMP/edge-agent.log" "UnaryCall via 127.0.0.1:$EDGE_PORT" probe "$EDGE_PORT"
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

# per_call TICKS_DELTA CALLS -> CPU microseconds per call
per_call() {
	awk -v d="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { if (n > 0) printf "%.2f", d * 1000000 / hz / n }'
}

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
	# Everything the benchmark runs, left out of the CPU of other processes:
	# this shell (it reaps ghz), the server, both proxies (idle but for the
	# target) and the kernel's softirq threads (loopback traffic).
	local -a ours=()
	mapfile -t ours < <(
		echo "$$"
		echo "$SERVER_PID"
		pid_tree "$PROXY_PID"
		[[ -z $EDGE_PID ]] || echo "$EDGE_PID"
		pgrep '^ksoftirqd/' || true
	)
	local before=0 after=0 sbefore safter obefore oafter gbefore gafter
	local -a mbefore mafter

	[[ $QUIET == 0 ]] || wait_quiet
	((${#pids[@]} == 0)) || before=$(cpu_ticks "${pids[@]}")
	sbefore=$(cpu_ticks "$SERVER_PID")
	obefore=$(foreign_ticks "${ours[@]}")
	children_ms
	gbefore=$REPLY
	read -r -a mbefore <<<"$(machine_sample)"

	log "round $round: $target: ghz -c $CONCURRENCY --connections $CONNECTIONS -z $DURATION $addr"
	run_ghz "$raw" "${GHZ_COMMON[@]}" -z "$DURATION" "$addr" || rc=$?

	read -r -a mafter <<<"$(machine_sample)"
	children_ms
	gafter=$REPLY
	oafter=$(foreign_ticks "${ours[@]}")
	((${#pids[@]} == 0)) || after=$(cpu_ticks "${pids[@]}")
	safter=$(cpu_ticks "$SERVER_PID")

	local key="$round,$target" secs other steal disturbed
	secs=$(awk -v ms=$((mafter[0] - mbefore[0])) 'BEGIN { printf "%.3f", ms / 1000 }')
	# CPU of other processes and hypervisor steal, in cores over the run.
	read -r other steal disturbed < <(awk -v hz="$CLK_TCK" -v s="$secs" \
		-v foreign=$((oafter - obefore)) -v steal=$((mafter[2] - mbefore[2])) -v quiet="$QUIET" 'BEGIN {
			o = foreign / hz / s; if (o < 0) o = 0
			st = steal / hz / s
			printf "%.2f %.2f %d\n", o, st, (quiet == 1 && (o >= 0.1 || st >= 0.15))
		}')
	OTHER[$key]=$other STEAL[$key]=$steal DISTURBED[$key]=$disturbed
	if ((disturbed)); then
		log "round $round: $target: disturbed (other processes $other cores, steal $steal cores)"
	fi

	if ((rc != 0)) || ! parsed=$(parse_ghz "$raw"); then
		log "ghz failed for $target (exit $rc); output:"
		cat "$raw" >&2
		FAILED=1
		RPS[$key]=; P50[$key]=; P99[$key]=; CALLS[$key]=0; ERRS[$key]=-; PROXY_CPU[$key]=; SERVER_CPU[$key]=; GHZ_CPU[$key]=
		return 0
	fi
	local rps p50 p99 calls errs
	read -r rps p50 p99 calls errs <<<"$parsed"
	RPS[$key]=$rps P50[$key]=$p50 P99[$key]=$p99 CALLS[$key]=$calls ERRS[$key]=$errs
	PROXY_CPU[$key]=
	((${#pids[@]} == 0)) || PROXY_CPU[$key]=$(per_call $((after - before)) "$calls")
	SERVER_CPU[$key]=$(per_call $((safter - sbefore)) "$calls")
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

# ratio A B -> A/B with 3 decimals, or "" if either is missing/zero.
ratio() {
	[[ -n ${1:-} && -n ${2:-} ]] || { echo ""; return; }
	awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print ""; else printf "%.3f", a / b }'
}

# median of the non-empty arguments, or "".
median() {
	local v vals=()
	for v in "$@"; do [[ -n $v ]] && vals+=("$v"); done
	((${#vals[@]} > 0)) || { echo ""; return; }
	printf '%s\n' "${vals[@]}" | sort -g | awk '{ a[NR] = $1 }
		END { if (NR % 2) printf "%.3f", a[(NR + 1) / 2]; else printf "%.3f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# round1 X -> X with one decimal, or "" if X is empty.
round1() { [[ -z ${1:-} ]] || awk -v v="$1" 'BEGIN { printf "%.1f", v }'; }

# bang FLAG -> "!" if FLAG is 1.
bang() { if [[ ${1:-0} == 1 ]]; then printf '!'; fi; }

or_na() { if [[ -n ${1:-} ]]; then printf '%s' "$1"; else printf 'n/a'; fi; }

RATIO_NAMES=(nginx/direct edge-agent/direct edge-agent/nginx "edge-agent p99/nginx p99")
declare -A RATIO

others=$(pgrep -a -x 'wrk|ghz|h2load' 2>/dev/null || true)
if [[ -n $others ]]; then
	log "WARNING: other load generators are running; they will disturb the numbers:"
	printf '%s\n' "$others" >&2
fi

LOADDESC="ghz -c $CONCURRENCY --connections $CONNECTIONS -z $DURATION, $RESPONSE_BYTES-byte responses"
log "machine: $(nproc) cores; $LOADDESC, warm-up $WARMUP, $ROUNDS round(s)"
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

# A round is disturbed (!) if any of its measurements was; medians use the
# undisturbed rounds, or every round if none was.
declare -A ROUND_BAD
USE_ROUNDS=()
for ((r = 1; r <= ROUNDS; r++)); do
	ROUND_BAD[$r]=0
	for t in "${TARGETS[@]}"; do
		if ((DISTURBED[$r,$t])); then ROUND_BAD[$r]=1; fi
	done
	if ((!ROUND_BAD[$r])); then USE_ROUNDS+=("$r"); fi
done
MEDIAN_NOTE="${#USE_ROUNDS[@]} undisturbed round(s) of $ROUNDS"
if ((${#USE_ROUNDS[@]} == 0)); then
	for ((r = 1; r <= ROUNDS; r++)); do USE_ROUNDS+=("$r"); done
	MEDIAN_NOTE="every round disturbed: all $ROUNDS round(s)"
fi

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
		if [[ $name == *p99* ]]; then
			printf '  %-26s %s\n' "$name:" "$(or_na "${RATIO[$r,$name]}")"
		else
			printf '  %-26s %s\n' "$name req/s:" "$(or_na "${RATIO[$r,$name]}")"
		fi
	done
}

for ((r = 1; r <= ROUNDS; r++)); do print_round "$r"; done

declare -A MEDIAN MED_RPS MED_P99
for name in "${RATIO_NAMES[@]}"; do
	vals=()
	for r in "${USE_ROUNDS[@]}"; do vals+=("${RATIO[$r,$name]}"); done
	MEDIAN[$name]=$(median "${vals[@]}")
done
for t in "${TARGETS[@]}"; do
	vals=() pvals=()
	for r in "${USE_ROUNDS[@]}"; do vals+=("${RPS[$r,$t]}") pvals+=("${P99[$r,$t]}"); done
	MED_RPS[$t]=$(round1 "$(median "${vals[@]}")")
	MED_P99[$t]=$(round1 "$(median "${pvals[@]}")")
done

printf '\n== medians (%s) ==\n' "$MEDIAN_NOTE"
printf '%-11s %10s %9s\n' target 'req/s' 'p99 (us)'
for t in "${TARGETS[@]}"; do
	printf '%-11s %10s %9s\n' "$t" "$(or_na "${MED_RPS[$t]}")" "$(or_na "${MED_P99[$t]}")"
done
for name in "${RATIO_NAMES[@]}"; do
	line=""
	for ((r = 1; r <= ROUNDS; r++)); do
		line+="${line:+ }$(or_na "${RATIO[$r,$name]}")$(bang "${ROUND_BAD[$r]}")"
	done
	if [[ $name == *p99* ]]; then
		printf '  %-26s %s   (rounds: %s)\n' "$name:" "$(or_na "${MEDIAN[$name]}")" "$line"
	else
		printf '  %-26s %s   (rounds: %s)\n' "$name req/s:" "$(or_na "${MEDIAN[$name]}")" "$line"
	fi
done
if [[ -n ${MEDIAN[edge-agent/nginx]} ]]; then
	printf '  goal edge-agent/nginx req/s >= 1: %s (reported, not asserted)\n' \
		"$(awk -v m="${MEDIAN[edge-agent/nginx]}" 'BEGIN { print (m >= 1 ? "met" : "missed") }')"
fi

if [[ -n $OUT ]]; then
	jnum() { if [[ -n ${1:-} && $1 != - ]]; then printf '%s' "$1"; else printf 'null'; fi; }
	jbool() { if ((${1:-0})); then printf true; else printf false; fi; }
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
		printf '  "config": {"cores": %d, "load_generator": "ghz %s", "call": "%s", "concurrency": %s, "connections": %s, "duration": "%s", "warmup": "%s", "rounds": %d, "nginx_version": "%s", "nginx_workers": "%s", "response_bytes": %d, "quiet": %s},\n' \
			"$(nproc)" "$GHZ_MOD_VERSION" "$CALL" "$CONCURRENCY" "$CONNECTIONS" "$DURATION" "$WARMUP" \
			"$ROUNDS" "$NGINX_VERSION" "$NGINX_WORKERS" "$RESPONSE_BYTES" "$(jbool "$QUIET")"
		printf '  "latency_unit": "us",\n'
		printf '  "rounds": [\n'
		for ((r = 1; r <= ROUNDS; r++)); do
			printf '    {"round": %d, "disturbed": %s, "targets": [\n' "$r" "$(jbool "${ROUND_BAD[$r]}")"
			n=0
			for t in "${TARGETS[@]}"; do
				key="$r,$t"
				((n++ == 0)) || printf ',\n'
				printf '      {"target": "%s", "port": %s, "calls": %s, "rps": %s, "p50_us": %s, "p99_us": %s, "non_ok": %s, "proxy_cpu_us_per_req": %s, "server_cpu_us_per_req": %s, "ghz_cpu_us_per_req": %s, "other_cores": %s, "steal_cores": %s, "disturbed": %s}' \
					"$t" "${PORT[$t]}" "$(jnum "${CALLS[$key]}")" "$(jnum "${RPS[$key]}")" "$(jnum "${P50[$key]}")" \
					"$(jnum "${P99[$key]}")" "$(jnum "${ERRS[$key]}")" "$(jnum "${PROXY_CPU[$key]}")" \
					"$(jnum "${SERVER_CPU[$key]}")" "$(jnum "${GHZ_CPU[$key]}")" "$(jnum "${OTHER[$key]}")" \
					"$(jnum "${STEAL[$key]}")" "$(jbool "${DISTURBED[$key]}")"
			done
			printf '\n    ], "ratios": %s}' "$(jratios "$r,")"
			((r == ROUNDS)) || printf ','
			printf '\n'
		done
		printf '  ],\n'
		printf '  "median_rounds": [%s],\n' "$(IFS=,; echo "${USE_ROUNDS[*]}")"
		printf '  "medians": {'
		n=0
		for t in "${TARGETS[@]}"; do
			((n++ == 0)) || printf ', '
			printf '"%s": {"rps": %s, "p99_us": %s}' "$t" "$(jnum "${MED_RPS[$t]}")" "$(jnum "${MED_P99[$t]}")"
		done
		printf '},\n'
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
