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

need_positive ROUNDS CONNS THREADS
((THREADS <= CONNS)) || die "THREADS ($THREADS) must not exceed CONNS ($CONNS)"
need_flag MIRROR QUIET

need_bins nginx=/usr/sbin/nginx wrk=/usr/bin/wrk
need_tools curl awk pgrep getconf
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

need_free_ports BACKEND_PORT EDGE_PORT ADMIN_PORT
BODY=$(bench_body "$BODY_BYTES")

log "temp dir: $TMP"
log "starting backend nginx on 127.0.0.1:$BACKEND_PORT"
start_nginx backend "$BENCH_DIR/backend.nginx.conf.tmpl" "BODY=$BODY" "BACKEND_PORT=$BACKEND_PORT"
BACKEND_PID=$NGINX_PID
wait_ready backend "http://127.0.0.1:$BACKEND_PORT/" "$BACKEND_PID" "$TMP/backend/error.log"
# Master and worker (worker_processes 1), for the backend's CPU.
mapfile -t BACKEND_PIDS < <(pid_tree "$BACKEND_PID")

# ------------------------------------------------------------ edge-agent ---

need_edge_agent make build
render "$BENCH_DIR/policy.edge.yaml.tmpl" "$TMP/edge.yaml" \
	"ADMIN_PORT=$ADMIN_PORT" "EDGE_PORT=$EDGE_PORT" "BACKEND_PORT=$BACKEND_PORT"
if ! "$EDGE_AGENT" validate "$TMP/edge.yaml" >"$TMP/validate.log" 2>&1; then
	show_log "$TMP/validate.log"
	die "edge-agent validate rejected the rendered config $TMP/edge.yaml"
fi
start_edge_agent "$TMP/edge.yaml"

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

	local key="$round,$target" ebefore eafter bbefore bafter
	# The benchmark's own processes besides this shell: the backend, edge-agent.
	disturb_prepare "${BACKEND_PIDS[@]}" "$EDGE_PID"
	ebefore=$(cpu_ticks "$EDGE_PID")
	bbefore=$(cpu_ticks "${BACKEND_PIDS[@]}")
	# shellcheck disable=SC2119 # nothing to run between its samples
	disturb_begin

	log "round $round: $target: wrk -t$THREADS -c$CONNS -d$DURATION --latency -H '$HASH_HEADER' $url"
	run_wrk "$raw" "${WRK_ARGS[@]}" -d"$DURATION" --latency "$url" || rc=$?

	# shellcheck disable=SC2119
	disturb_end
	eafter=$(cpu_ticks "$EDGE_PID")
	bafter=$(cpu_ticks "${BACKEND_PIDS[@]}")
	disturb_record "$key" "$round" "$target"

	if ((rc != 0)) || ! parsed=$(parse_wrk "$raw"); then
		run_failed wrk "$target" "$rc" "$raw"
		RPS[$key]=; P50[$key]=; P99[$key]=; REQS[$key]=0; SOCKERR[$key]=-; NON2XX[$key]=-; EDGE_CPU[$key]=; BACKEND_CPU[$key]=
		return 0
	fi
	local rps p50 p99 reqs sock non2xx
	read -r rps p50 p99 reqs sock non2xx <<<"$parsed"
	RPS[$key]=$rps P50[$key]=$p50 P99[$key]=$p99 REQS[$key]=$reqs SOCKERR[$key]=$sock NON2XX[$key]=$non2xx
	EDGE_CPU[$key]=$(per_req $((eafter - ebefore)) "$reqs" 1)
	BACKEND_CPU[$key]=$(per_req $((bafter - bbefore)) "$reqs" 1)
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

# policy_ratios ROUND: RATIO[ROUND,NAME] for each of RATIO_NAMES.
policy_ratios() {
	local r=$1 t
	for t in "${TARGETS[@]:1}"; do
		RATIO["$r,$t/plain req/s"]=$(ratio "${RPS[$r,$t]}" "${RPS[$r,plain]}")
		RATIO["$r,$t/plain p99"]=$(ratio "${P99[$r,$t]}" "${P99[$r,plain]}")
		RATIO["$r,$t/plain edge CPU/req"]=$(ratio "${EDGE_CPU[$r,$t]}" "${EDGE_CPU[$r,plain]}")
	done
}

warn_other_loadgens

LOADDESC="wrk -t$THREADS -c$CONNS -d$DURATION"
log "machine: $(nproc) cores; $LOADDESC, warm-up $WARMUP, $ROUNDS round(s): ${TARGETS[*]}"
run_rounds policy_ratios

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
median_rounds

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

median_ratios
declare -A MED_RPS MED_P99 MED_CPU
for t in "${TARGETS[@]}"; do
	MED_RPS[$t]=$(target_median RPS "$t")
	MED_P99[$t]=$(target_median P99 "$t")
	MED_CPU[$t]=$(target_median EDGE_CPU "$t")
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
	printf '  %-41s %s   (rounds: %s)\n' "$name median ratio:" "$(or_na "${MEDIAN[$name]}")" "$(rounds_line "$name")"
done
if ((FAILED)); then
	printf '  goal: policies cost < 10%% of req/s: not evaluated, the run had errors\n'
elif [[ -n ${MEDIAN[policy/plain req/s]} ]]; then
	printf '  goal: policies cost < 10%% of req/s (policy/plain >= 0.90): %s (reported, not asserted)\n' \
		"$(awk -v m="${MEDIAN[policy/plain req/s]}" 'BEGIN { print (m >= 0.9 ? "met" : "missed") }')"
fi

if [[ -n $OUT ]]; then
	{
		printf '{\n'
		printf '  "config": {"cores": %d, "threads": %s, "connections": %s, "duration": "%s", "warmup": "%s", "rounds": %d, "mirror": %s, "quiet": %s, "body_bytes": %d, "header": "%s"},\n' \
			"$(nproc)" "$THREADS" "$CONNS" "$DURATION" "$WARMUP" "$ROUNDS" "$(jbool "$MIRROR")" "$(jbool "$QUIET")" \
			"$BODY_BYTES" "$HASH_HEADER"
		json_rounds --disturbed path=str:URL_PATH requests=REQS rps=RPS p50_us=P50 p99_us=P99 \
			socket_errors=SOCKERR non_2xx=NON2XX edge_cpu_us_per_req=EDGE_CPU \
			backend_cpu_us_per_req=BACKEND_CPU other_cores=OTHER steal_cores=STEAL disturbed=bool:DISTURBED
		json_medians rps=MED_RPS p99_us=MED_P99 edge_cpu_us_per_req=MED_CPU
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
