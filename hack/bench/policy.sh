#!/usr/bin/env bash
# Policy benchmark: what a route's traffic policies cost edge-agent. One
# edge-agent, one nginx backend, two routes to it (see
# policy.edge.yaml.tmpl): "plain" with no policies, "policy" with every
# route and cluster policy that leaves the request and the answer as they
# are (retry, rate limit, idle timeout; circuit breaker, outlier detection,
# active health check, maglev hashing, slow start). wrk measures both in
# interleaved rounds; the result is the ratio policy/plain. MIRROR=1 adds a
# third route that mirrors every request to a shadow cluster. See
# hack/bench/README.md.
#
# Environment (all optional):
#   BACKEND_PORT=18201  EDGE_PORT=18203  ADMIN_PORT=19921
#   CONNS=64            wrk connections
#   THREADS=2           wrk threads
#   DURATION=10s        length of each measured run
#   WARMUP=2s           length of the warm-up before each run (0 = none)
#   ROUNDS=3            repeat plain/policy[/mirror] N times, interleaved
#   MIRROR=0            1 = also measure the mirror route (reported as mirror/plain)
#   QUIET=1             before each measurement wait (up to 30 s) until the
#                       machine uses < 0.1 cores, and count the CPU that
#                       processes other than the benchmark's used during it; a
#                       round in which that was >= 0.1 cores, or hypervisor
#                       steal >= 0.15 cores, is flagged ! and left out of the
#                       medians. QUIET=0: no waiting, no flags
#   EDGE_AGENT=path     edge-agent binary (default <repo>/bin/edge-agent, built
#                       with `make build` if missing)
#   NGINX_BIN, WRK_BIN  override the nginx / wrk executables
#   OUT=file.json       also write the results as JSON
#   KEEP_TMP=1          keep the temp dir (config, logs, raw wrk output)
#
# Exits non-zero if a server fails to start, the config does not validate, a
# route does not answer 200 with the backend's body, or any run had socket
# errors, non-2xx responses or unparsable wrk output, or a policy acted
# (rate-limited, breaker overflow, retry, ejection, endpoint unhealthy): the
# policies must be evaluated on every request but never change one.
# Performance numbers are only reported, never asserted on.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/../.." && pwd)

BACKEND_PORT=${BACKEND_PORT:-18201}
EDGE_PORT=${EDGE_PORT:-18203}
ADMIN_PORT=${ADMIN_PORT:-19921}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
MIRROR=${MIRROR:-0}
QUIET=${QUIET:-1}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
EDGE_AGENT=${EDGE_AGENT:-}

BODY_BYTES=100
READY_TIMEOUT_MS=10000
# Sent on every request of every target, so the request bytes are the same;
# the policy cluster hashes it (maglev). One endpoint: it always wins.
HASH_HEADER='X-User: bench'
# Request paths of equal length, so every request line is as long.
declare -A URL_PATH=([plain]=/plain/xx [policy]=/policy/x [mirror]=/mirror/x)

BENCH_TAG=bench-policy
# shellcheck source=hack/bench/lib.sh
source "$BENCH_DIR/lib.sh"

# ---------------------------------------------------------------- prereqs ---

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer, got '$CONNS'"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer, got '$THREADS'"
((THREADS <= CONNS)) || die "THREADS ($THREADS) must not exceed CONNS ($CONNS)"
[[ $MIRROR == 0 || $MIRROR == 1 ]] || die "MIRROR must be 0 or 1"
[[ $QUIET == 0 || $QUIET == 1 ]] || die "QUIET must be 0 or 1"

# find_tool NAME DEFAULT_PATH: PATH lookup, falling back to the Debian location
# (/usr/sbin is not on every user's PATH).
find_tool() { command -v "$1" 2>/dev/null || { [[ -x $2 ]] && echo "$2"; } || true; }
NGINX_BIN=${NGINX_BIN:-$(find_tool nginx /usr/sbin/nginx)}
WRK_BIN=${WRK_BIN:-$(find_tool wrk /usr/bin/wrk)}
missing=()
[[ -n $NGINX_BIN && -x $NGINX_BIN ]] || missing+=(nginx)
[[ -n $WRK_BIN && -x $WRK_BIN ]] || missing+=(wrk)
if ((${#missing[@]} > 0)); then
	die "${missing[*]} not found (needed by the benchmark). Install with: apt-get install -y --no-install-recommends nginx wrk"
fi
for tool in curl awk pgrep getconf; do
	command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found"
done
CLK_TCK=$(getconf CLK_TCK)

TARGETS=(plain policy)
((MIRROR == 0)) || TARGETS+=(mirror)
for t in "${TARGETS[@]}"; do
	((${#URL_PATH[$t]} == ${#URL_PATH[plain]})) || die "request paths differ in length: ${URL_PATH[$t]} vs ${URL_PATH[plain]}"
done

# -------------------------------------------------------- temp + cleanup ---

TMP=$(mktemp -d "${TMPDIR:-/tmp}/edge-bench-policy.XXXXXX")
install_cleanup

# ---------------------------------------------------------------- helpers ---

or_na() { if [[ -n ${1:-} ]]; then printf '%s' "$1"; else printf 'n/a'; fi; }
bang() { if [[ ${1:-0} == 1 ]]; then printf '!'; fi; }
round1() { [[ -z ${1:-} ]] || awk -v v="$1" 'BEGIN { printf "%.1f", v }'; }

# machine_sample: "<ms> <busy ticks> <steal ticks>" from /proc/stat, all CPUs.
machine_sample() {
	local _cpu user nice system _idle _iowait irq softirq steal _rest
	read -r _cpu user nice system _idle _iowait irq softirq steal _rest </proc/stat
	echo "$(now_ms) $((user + nice + system + irq + softirq)) $steal"
}

# wait_quiet: wait up to 30 s for a second in which the machine uses < 0.1 cores.
wait_quiet() {
	local i c a b
	for ((i = 0; i < 30; i++)); do
		read -r -a a <<<"$(machine_sample)"
		sleep 1
		read -r -a b <<<"$(machine_sample)"
		c=$(awk -v t=$((b[1] - a[1])) -v ms=$((b[0] - a[0])) -v hz="$CLK_TCK" \
			'BEGIN { printf "%.2f", t / hz / (ms / 1000) }')
		awk -v c="$c" 'BEGIN { exit !(c < 0.1) }' && return 0
	done
	log "machine still busy ($c cores) after 30 s; measuring anyway (the round will likely be flagged)"
}

# foreign_ticks PID...: utime + stime + cutime + cstime (clock ticks) summed
# over every process but the given ones (cutime/cstime catch short-lived
# processes, e.g. a compiler run by someone's go test, once reaped).
foreign_ticks() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v skip=" $* " '{
		if (index(skip, " " $1 " ")) next
		sub(/^.*\) /, "")
		t += $12 + $13 + $14 + $15
	} END { printf "%d", t }'
}

# per_req TICKS REQUESTS -> CPU microseconds per request
per_req() {
	awk -v d="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f", d * 1000000 / hz / n }'
}

# metric NAME LABEL=VALUE...: sum of the samples of NAME on the admin
# /metrics page (last scraped into $TMP/metrics) carrying every given label.
scrape() { curl -sf --max-time 5 -o "$TMP/metrics" "http://127.0.0.1:$ADMIN_PORT/metrics"; }
metric() {
	local name=$1
	shift
	awk -v name="$name" -v want="$*" '
	BEGIN { n = split(want, w, " ") }
	index($0, name "{") == 1 || $1 == name {
		for (i = 1; i <= n; i++) {
			split(w[i], kv, "=")
			if (index($0, kv[1] "=\"" kv[2] "\"") == 0) next
		}
		s += $NF
	}
	END { printf "%d", s }' "$TMP/metrics"
}

# --------------------------------------------------------------- backend ---

for p in "$BACKEND_PORT" "$EDGE_PORT" "$ADMIN_PORT"; do
	if port_in_use "$p"; then
		die "127.0.0.1:$p is already in use (set BACKEND_PORT/EDGE_PORT/ADMIN_PORT)"
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

log "temp dir: $TMP"
dir="$TMP/backend"
mkdir -p "$dir"
render "$BENCH_DIR/backend.nginx.conf.tmpl" "$dir/nginx.conf" \
	"DIR=$dir" "USER_DIRECTIVE=$USER_DIRECTIVE" "BODY=$BODY" "BACKEND_PORT=$BACKEND_PORT"
if ! "$NGINX_BIN" -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/configtest.log" 2>&1; then
	show_log "$dir/configtest.log"
	show_log "$dir/error.log"
	die "nginx (backend) config test failed"
fi
log "starting backend nginx on 127.0.0.1:$BACKEND_PORT"
"$NGINX_BIN" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
BACKEND_PID=$!
STARTED_PIDS+=("$BACKEND_PID")
wait_ready backend "http://127.0.0.1:$BACKEND_PORT/" "$BACKEND_PID" "$dir/error.log"
# Master and worker (worker_processes 1), for the backend's CPU.
mapfile -t BACKEND_PIDS < <(echo "$BACKEND_PID"; pgrep -P "$BACKEND_PID" || true)

# ------------------------------------------------------------ edge-agent ---

if [[ -z $EDGE_AGENT ]]; then
	EDGE_AGENT="$REPO_ROOT/bin/edge-agent"
	if [[ ! -x $EDGE_AGENT ]]; then
		log "building $EDGE_AGENT (make build)"
		(cd "$REPO_ROOT" && make build) >&2 || die "make build failed"
	fi
fi
[[ -x $EDGE_AGENT ]] || die "edge-agent binary not found or not executable: $EDGE_AGENT"

render "$BENCH_DIR/policy.edge.yaml.tmpl" "$TMP/edge.yaml" \
	"ADMIN_PORT=$ADMIN_PORT" "EDGE_PORT=$EDGE_PORT" "BACKEND_PORT=$BACKEND_PORT"
if ! "$EDGE_AGENT" validate "$TMP/edge.yaml" >"$TMP/validate.log" 2>&1; then
	show_log "$TMP/validate.log"
	die "edge-agent validate rejected the rendered config $TMP/edge.yaml"
fi
log "starting edge-agent on 127.0.0.1:$EDGE_PORT (admin 127.0.0.1:$ADMIN_PORT): $EDGE_AGENT"
"$EDGE_AGENT" run --config "$TMP/edge.yaml" >"$TMP/edge-agent.log" 2>&1 &
EDGE_PID=$!
STARTED_PIDS+=("$EDGE_PID")
wait_ready edge-agent "http://127.0.0.1:$ADMIN_PORT/readyz" "$EDGE_PID" "$TMP/edge-agent.log"

# Every measured route answers 200 with the backend's body, and the same
# request through each: only the path differs (equal length).
for t in "${TARGETS[@]}"; do
	url="http://127.0.0.1:$EDGE_PORT${URL_PATH[$t]}"
	wait_ready "edge-agent ($t)" "$url" "$EDGE_PID" "$TMP/edge-agent.log"
	got=$(curl -s --max-time 2 -H "$HASH_HEADER" -o "$TMP/body.$t" -w '%{http_code}' "$url") || got="request failed"
	[[ $got == 200 ]] || die "$t: $url answered '$got', want 200"
	[[ $(<"$TMP/body.$t") == "$BODY" ]] || die "$t: $url did not answer the backend's body (got '$(head -c 200 "$TMP/body.$t")')"
done
scrape || die "cannot read http://127.0.0.1:$ADMIN_PORT/metrics"
[[ $(metric edge_agent_endpoint_healthy cluster=policy) == 1 ]] ||
	die "the policy cluster's endpoint is not reported healthy (edge_agent_endpoint_healthy): is the health check running?"

# ----------------------------------------------------------- measurement ---

# Results, keyed "ROUND,TARGET".
declare -A RPS P50 P99 REQS SOCKERR NON2XX EDGE_CPU BACKEND_CPU OTHER STEAL DISTURBED
FAILED=0
WRK_ARGS=(-t"$THREADS" -c"$CONNS" -H "$HASH_HEADER")

# measure ROUND TARGET
measure() {
	local round=$1 target=$2 url raw rc=0 parsed
	url="http://127.0.0.1:$EDGE_PORT${URL_PATH[$target]}"
	raw="$TMP/wrk.$round.$target.txt"

	if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
		run_wrk "$TMP/warmup.$round.$target.txt" "${WRK_ARGS[@]}" -d"$WARMUP" "$url" || true
	fi

	# Everything the benchmark runs, left out of the CPU of other processes:
	# this shell (it reaps wrk), the backend, edge-agent and the kernel's
	# softirq threads (loopback traffic).
	local -a ours=()
	mapfile -t ours < <(
		echo "$$"
		printf '%s\n' "${BACKEND_PIDS[@]}" "$EDGE_PID"
		pgrep '^ksoftirqd/' || true
	)
	local ebefore eafter bbefore bafter obefore oafter
	local -a mbefore mafter

	[[ $QUIET == 0 ]] || wait_quiet
	ebefore=$(cpu_ticks "$EDGE_PID")
	bbefore=$(cpu_ticks "${BACKEND_PIDS[@]}")
	obefore=$(foreign_ticks "${ours[@]}")
	read -r -a mbefore <<<"$(machine_sample)"

	log "round $round: $target: wrk -t$THREADS -c$CONNS -d$DURATION --latency -H '$HASH_HEADER' $url"
	run_wrk "$raw" "${WRK_ARGS[@]}" -d"$DURATION" --latency "$url" || rc=$?

	read -r -a mafter <<<"$(machine_sample)"
	oafter=$(foreign_ticks "${ours[@]}")
	eafter=$(cpu_ticks "$EDGE_PID")
	bafter=$(cpu_ticks "${BACKEND_PIDS[@]}")

	local key="$round,$target" secs other steal disturbed
	secs=$(awk -v ms=$((mafter[0] - mbefore[0])) 'BEGIN { printf "%.3f", ms / 1000 }')
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

	if ((rc != 0)) || ! parsed=$(parse_wrk "$raw"); then
		log "wrk failed for $target (exit $rc); output:"
		cat "$raw" >&2
		FAILED=1
		RPS[$key]=; P50[$key]=; P99[$key]=; REQS[$key]=0; SOCKERR[$key]=-; NON2XX[$key]=-; EDGE_CPU[$key]=; BACKEND_CPU[$key]=
		return 0
	fi
	local rps p50 p99 reqs sock non2xx
	read -r rps p50 p99 reqs sock non2xx <<<"$parsed"
	RPS[$key]=$rps P50[$key]=$p50 P99[$key]=$p99 REQS[$key]=$reqs SOCKERR[$key]=$sock NON2XX[$key]=$non2xx
	EDGE_CPU[$key]=$(per_req $((eafter - ebefore)) "$reqs")
	BACKEND_CPU[$key]=$(per_req $((bafter - bbefore)) "$reqs")
	if ((sock > 0 || non2xx > 0)); then
		log "$target: $sock socket errors, $non2xx non-2xx responses (a policy that acts, e.g. 429 or 503, invalidates the run)"
		FAILED=1
	fi
	if ! kill -0 "$EDGE_PID" 2>/dev/null; then
		log "edge-agent died during the run"
		show_log "$TMP/edge-agent.log"
		FAILED=1
	fi
}

# Ratios against plain, per round: NAME is "TARGET/plain req/s", ".. p99"
# or ".. edge CPU/req".
RATIO_NAMES=()
for t in "${TARGETS[@]:1}"; do
	RATIO_NAMES+=("$t/plain req/s" "$t/plain p99" "$t/plain edge CPU/req")
done
declare -A RATIO

others=$(pgrep -a -x 'wrk|ghz|h2load' 2>/dev/null || true)
if [[ -n $others ]]; then
	log "WARNING: other load generators are running; they will disturb the numbers:"
	printf '%s\n' "$others" >&2
fi

LOADDESC="wrk -t$THREADS -c$CONNS -d$DURATION"
log "machine: $(nproc) cores; $LOADDESC, warm-up $WARMUP, $ROUNDS round(s): ${TARGETS[*]}"
for ((r = 1; r <= ROUNDS; r++)); do
	for t in "${TARGETS[@]}"; do
		measure "$r" "$t"
	done
	for t in "${TARGETS[@]:1}"; do
		RATIO["$r,$t/plain req/s"]=$(ratio "${RPS[$r,$t]}" "${RPS[$r,plain]}")
		RATIO["$r,$t/plain p99"]=$(ratio "${P99[$r,$t]}" "${P99[$r,plain]}")
		RATIO["$r,$t/plain edge CPU/req"]=$(ratio "${EDGE_CPU[$r,$t]}" "${EDGE_CPU[$r,plain]}")
	done
done

# ----------------------------------------------------- policies never acted ---

# The policies must have run on every request of the policy route without
# ever changing one: nothing rate-limited, no breaker overflow, no retry, no
# ejection, the endpoint healthy; and no route answered anything but 200.
declare -A CHECK
scrape || die "cannot read http://127.0.0.1:$ADMIN_PORT/metrics"
CHECK[rate_limited]=$(metric edge_agent_rate_limited_total route=policy)
CHECK[breaker_overflows]=$(metric edge_agent_circuit_breaker_overflows_total cluster=policy)
CHECK[retries]=$(metric edge_agent_retries_total route=policy)
CHECK[ejections]=$(metric edge_agent_outlier_ejections_total cluster=policy)
CHECK[endpoint_healthy]=$(metric edge_agent_endpoint_healthy cluster=policy)
CHECK[non_200]=$(($(metric edge_agent_http_requests_total) - $(metric edge_agent_http_requests_total code=200)))
CHECK_NAMES=(rate_limited breaker_overflows retries ejections endpoint_healthy non_200)
for name in "${CHECK_NAMES[@]}"; do
	want=0
	[[ $name != endpoint_healthy ]] || want=1
	if [[ ${CHECK[$name]} != "$want" ]]; then
		log "policy check $name = ${CHECK[$name]}, want $want"
		FAILED=1
	fi
done
# Each route's 200s must cover what wrk counted on it (the proxy also counts
# warm-ups, probes and requests cut at the end of a run).
declare -A SERVED
for t in "${TARGETS[@]}"; do
	SERVED[$t]=$(metric edge_agent_http_requests_total "route=$t" code=200)
	sum=0
	for ((r = 1; r <= ROUNDS; r++)); do sum=$((sum + ${REQS[$r,$t]:-0})); done
	if ((SERVED[$t] < sum)); then
		log "route $t served ${SERVED[$t]} requests (edge_agent_http_requests_total), fewer than wrk's $sum"
		FAILED=1
	fi
done
MIRRORED=
if ((MIRROR)); then
	MIRRORED="sent $(metric edge_agent_mirrored_requests_total route=mirror result=sent)"
	MIRRORED+=", failed $(metric edge_agent_mirrored_requests_total route=mirror result=failed)"
	MIRRORED+=", dropped_busy $(metric edge_agent_mirrored_requests_total route=mirror result=dropped_busy)"
	MIRRORED+=" of ${SERVED[mirror]} requests"
fi

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

ROWFMT='%-7s %-10s %10s %9s %9s %8s %7s %9s %9s %6s %6s\n'
print_round() {
	local r=$1 t key name flag=""
	if ((ROUND_BAD[$r])); then flag="  ! disturbed, not in the medians"; fi
	printf '\n== round %d/%d (%s, %s cores)%s ==\n' "$r" "$ROUNDS" "$LOADDESC" "$(nproc)" "$flag"
	# shellcheck disable=SC2059 # ROWFMT is a format
	printf "$ROWFMT" target path 'req/s' 'p50 (us)' 'p99 (us)' 'sock err' 'non-2xx' 'edge CPU' 'backend' other steal
	# shellcheck disable=SC2059
	printf "$ROWFMT" '' '' '' '' '' '' '' 'us/req' 'us/req' cores cores
	for t in "${TARGETS[@]}"; do
		key="$r,$t"
		# shellcheck disable=SC2059
		printf "$ROWFMT" "$t" "${URL_PATH[$t]}" "$(or_na "${RPS[$key]}")" "$(or_na "${P50[$key]}")" \
			"$(or_na "${P99[$key]}")" "${SOCKERR[$key]}" "${NON2XX[$key]}" "$(or_na "${EDGE_CPU[$key]}")" \
			"$(or_na "${BACKEND_CPU[$key]}")" "$(or_na "${OTHER[$key]}")$(bang "${DISTURBED[$key]}")" \
			"$(or_na "${STEAL[$key]}")"
	done
	for name in "${RATIO_NAMES[@]}"; do
		printf '  %-28s %s\n' "$name:" "$(or_na "${RATIO[$r,$name]}")"
	done
}

for ((r = 1; r <= ROUNDS; r++)); do print_round "$r"; done

declare -A MEDIAN MED_RPS MED_P99 MED_CPU
for name in "${RATIO_NAMES[@]}"; do
	vals=()
	for r in "${USE_ROUNDS[@]}"; do vals+=("${RATIO[$r,$name]}"); done
	MEDIAN[$name]=$(median "${vals[@]}")
done
for t in "${TARGETS[@]}"; do
	vals=() pvals=() cvals=()
	for r in "${USE_ROUNDS[@]}"; do
		vals+=("${RPS[$r,$t]}") pvals+=("${P99[$r,$t]}") cvals+=("${EDGE_CPU[$r,$t]}")
	done
	MED_RPS[$t]=$(round1 "$(median "${vals[@]}")")
	MED_P99[$t]=$(round1 "$(median "${pvals[@]}")")
	MED_CPU[$t]=$(round1 "$(median "${cvals[@]}")")
done

printf '\n== policies never acted ==\n'
printf '  rate-limited %s, breaker overflows %s, retries %s, ejections %s, endpoint healthy %s, non-200 answers %s\n' \
	"${CHECK[rate_limited]}" "${CHECK[breaker_overflows]}" "${CHECK[retries]}" "${CHECK[ejections]}" \
	"${CHECK[endpoint_healthy]}" "${CHECK[non_200]}"
for t in "${TARGETS[@]}"; do
	printf '  route %-7s served %s (200s, warm-ups and checks included)\n' "$t" "${SERVED[$t]}"
done
[[ -z $MIRRORED ]] || printf '  mirrored: %s\n' "$MIRRORED"

printf '\n== medians (%s) ==\n' "$MEDIAN_NOTE"
printf '%-7s %10s %9s %9s\n' target 'req/s' 'p99 (us)' 'edge CPU'
printf '%-7s %10s %9s %9s\n' '' '' '' 'us/req'
for t in "${TARGETS[@]}"; do
	printf '%-7s %10s %9s %9s\n' "$t" "$(or_na "${MED_RPS[$t]}")" "$(or_na "${MED_P99[$t]}")" "$(or_na "${MED_CPU[$t]}")"
done
for name in "${RATIO_NAMES[@]}"; do
	line=""
	for ((r = 1; r <= ROUNDS; r++)); do
		line+="${line:+ }$(or_na "${RATIO[$r,$name]}")$(bang "${ROUND_BAD[$r]}")"
	done
	printf '  %-41s %s   (rounds: %s)\n' "$name median ratio:" "$(or_na "${MEDIAN[$name]}")" "$line"
done
if ((FAILED)); then
	printf '  goal: policies cost < 10%% of req/s: not evaluated, the run had errors\n'
elif [[ -n ${MEDIAN[policy/plain req/s]} ]]; then
	printf '  goal: policies cost < 10%% of req/s (policy/plain >= 0.90): %s (reported, not asserted)\n' \
		"$(awk -v m="${MEDIAN[policy/plain req/s]}" 'BEGIN { print (m >= 0.9 ? "met" : "missed") }')"
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
		printf '  "config": {"cores": %d, "threads": %s, "connections": %s, "duration": "%s", "warmup": "%s", "rounds": %d, "mirror": %s, "quiet": %s, "body_bytes": %d, "header": "%s"},\n' \
			"$(nproc)" "$THREADS" "$CONNS" "$DURATION" "$WARMUP" "$ROUNDS" "$(jbool "$MIRROR")" "$(jbool "$QUIET")" \
			"$BODY_BYTES" "$HASH_HEADER"
		printf '  "latency_unit": "us",\n'
		printf '  "rounds": [\n'
		for ((r = 1; r <= ROUNDS; r++)); do
			printf '    {"round": %d, "disturbed": %s, "targets": [\n' "$r" "$(jbool "${ROUND_BAD[$r]}")"
			n=0
			for t in "${TARGETS[@]}"; do
				key="$r,$t"
				((n++ == 0)) || printf ',\n'
				printf '      {"target": "%s", "path": "%s", "requests": %s, "rps": %s, "p50_us": %s, "p99_us": %s, "socket_errors": %s, "non_2xx": %s, "edge_cpu_us_per_req": %s, "backend_cpu_us_per_req": %s, "other_cores": %s, "steal_cores": %s, "disturbed": %s}' \
					"$t" "${URL_PATH[$t]}" "$(jnum "${REQS[$key]}")" "$(jnum "${RPS[$key]}")" "$(jnum "${P50[$key]}")" \
					"$(jnum "${P99[$key]}")" "$(jnum "${SOCKERR[$key]}")" "$(jnum "${NON2XX[$key]}")" \
					"$(jnum "${EDGE_CPU[$key]}")" "$(jnum "${BACKEND_CPU[$key]}")" "$(jnum "${OTHER[$key]}")" \
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
			printf '"%s": {"rps": %s, "p99_us": %s, "edge_cpu_us_per_req": %s}' "$t" \
				"$(jnum "${MED_RPS[$t]}")" "$(jnum "${MED_P99[$t]}")" "$(jnum "${MED_CPU[$t]}")"
		done
		printf '},\n'
		printf '  "median_ratios": %s,\n' "$(jratios "")"
		printf '  "policy_checks": {'
		n=0
		for name in "${CHECK_NAMES[@]}"; do
			((n++ == 0)) || printf ', '
			printf '"%s": %s' "$name" "${CHECK[$name]}"
		done
		printf '},\n'
		printf '  "ok": %s\n' "$( ((FAILED == 0)) && echo true || echo false)"
		printf '}\n'
	} >"$OUT"
	log "wrote $OUT"
fi

if ((FAILED)); then
	log "FAILED: at least one run had errors or a policy acted (see above)"
	exit 1
fi
