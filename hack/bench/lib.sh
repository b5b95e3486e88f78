# shellcheck shell=bash
# Shared by run.sh, grpc.sh and policy.sh:
# - logging (log, die, show_log), cleanup of the processes a benchmark
#   started (cleanup, install_cleanup), template rendering (render);
# - setup: need_positive, need_flag, find_tool, need_tools, need_bins,
#   need_free_ports, pid_tree, now_ms, wait_until, wait_ready, bench_body,
#   start_nginx, need_edge_agent, start_edge_agent;
# - load generators and their numbers: run_load, run_wrk, run_failed,
#   run_rounds, parse_wrk, cpu_ticks, per_req, ratio, median, round1, or_na,
#   bang;
# - the CPU of other processes and hypervisor steal around each measured run
#   and the medians over undisturbed rounds (grpc.sh, policy.sh, QUIET):
#   machine_sample, busy_cores, wait_quiet, foreign_ticks, disturb_prepare,
#   disturb_begin, disturb_end, disturb_record, warn_other_loadgens,
#   median_rounds, median_ratios, target_median, rounds_line;
# - the direct/nginx/edge-agent ratios of run.sh and grpc.sh
#   (PROXY_RATIO_NAMES, proxy_ratios, ratio_label);
# - the JSON report: jnum, jbool, jratios, json_fields, json_rounds,
#   json_medians.
#
# The sourcing script sets BENCH_TAG (log prefix) and REPO_ROOT before
# sourcing, then TMP and KEEP_TMP, appends every server it starts to
# STARTED_PIDS, and sets LOADGEN_PID while a load generator (wrk, ghz) runs.
# Other globals the helpers read or fill are named in their comments (e.g.
# READY_TIMEOUT_MS, WRK_BIN, CLK_TCK, QUIET, ROUNDS, TARGETS, RATIO,
# RATIO_NAMES).

log() { printf '[%s] %s\n' "$BENCH_TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$BENCH_TAG" "$*" >&2; exit 1; }

STARTED_PIDS=()
LOADGEN_PID=

# cleanup stops the load generator and every started process (nginx
# workers too), then removes TMP unless KEEP_TMP=1. Installed on EXIT.
cleanup() {
	local rc=$? pid child i alive
	set +e
	trap - EXIT INT TERM
	local all=()
	[[ -z ${LOADGEN_PID:-} ]] || all+=("$LOADGEN_PID")
	for pid in "${STARTED_PIDS[@]}"; do
		all+=("$pid")
		# nginx workers: collect before the master goes away.
		for child in $(pgrep -P "$pid" 2>/dev/null); do all+=("$child"); done
	done
	if ((${#all[@]} > 0)); then
		kill -TERM "${all[@]}" 2>/dev/null
		for ((i = 0; i < 50; i++)); do
			alive=0
			for pid in "${all[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
			((alive)) || break
			sleep 0.1
		done
		for pid in "${all[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null; done
		for pid in "${STARTED_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	fi
	if [[ -n ${TMP:-} ]]; then
		if [[ ${KEEP_TMP:-0} == 1 ]]; then
			log "kept temp dir $TMP"
		else
			rm -rf "$TMP"
		fi
	fi
	exit "$rc"
}

install_cleanup() {
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# render TEMPLATE OUTPUT KEY=VALUE... : replace @@KEY@@ with VALUE.
render() {
	local tmpl=$1 out=$2 kv key val text
	shift 2
	text=$(<"$tmpl")
	for kv in "$@"; do
		key=${kv%%=*}
		val=${kv#*=}
		text=${text//"@@${key}@@"/$val}
	done
	if [[ $text == *@@[A-Z_]*@@* ]]; then
		die "unsubstituted placeholder left in $tmpl"
	fi
	printf '%s\n' "$text" >"$out"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

show_log() {
	local file=$1
	if [[ -s $file ]]; then
		printf '[%s] --- last lines of %s ---\n' "$BENCH_TAG" "$file" >&2
		tail -n 30 "$file" >&2
		printf '[%s] ---\n' "$BENCH_TAG" >&2
	fi
}


# ------------------------------------------------------------------ setup ---

# find_tool NAME DEFAULT_PATH: PATH lookup, falling back to DEFAULT_PATH
# (e.g. Debian's /usr/sbin/nginx: /usr/sbin is not on every user's PATH).
find_tool() { command -v "$1" 2>/dev/null || { [[ -x $2 ]] && echo "$2"; } || true; }

# need_tools TOOL...: die unless every TOOL is on PATH.
need_tools() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found"
	done
}

# need_positive VAR...: die unless each VAR is a positive integer.
need_positive() {
	local var
	for var in "$@"; do
		[[ ${!var} =~ ^[1-9][0-9]*$ ]] || die "$var must be a positive integer, got '${!var}'"
	done
}

# need_flag VAR...: die unless each VAR is 0 or 1.
need_flag() {
	local var
	for var in "$@"; do
		[[ ${!var} == 0 || ${!var} == 1 ]] || die "$var must be 0 or 1"
	done
}

# need_bins NAME=DEFAULT_PATH...: set NAME_BIN (upper case: NGINX_BIN,
# WRK_BIN), unless already set, with find_tool; die naming the ones not
# found, with the apt-get line that installs every NAME.
need_bins() {
	local spec name var missing=() names=()
	for spec in "$@"; do
		name=${spec%%=*}
		var=${name^^}_BIN
		names+=("$name")
		[[ -n ${!var:-} ]] || printf -v "$var" '%s' "$(find_tool "$name" "${spec#*=}")"
		[[ -n ${!var} && -x ${!var} ]] || missing+=("$name")
	done
	if ((${#missing[@]} > 0)); then
		die "${missing[*]} not found (needed by the benchmark). Install with: apt-get install -y --no-install-recommends ${names[*]}"
	fi
}

# need_free_ports VAR...: die if 127.0.0.1 already listens on the port in
# any VAR (BACKEND_PORT, ...), naming the variables to set.
need_free_ports() {
	local var vars
	vars=$(IFS=/; echo "$*")
	for var in "$@"; do
		if port_in_use "${!var}"; then
			die "127.0.0.1:${!var} is already in use (set $vars)"
		fi
	done
}

# pid plus its direct children (nginx master + workers).
pid_tree() {
	echo "$1"
	pgrep -P "$1" 2>/dev/null || true
}

# now_ms: wall clock in milliseconds (bash 5 $EPOCHREALTIME).
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

# wait_until NAME PID LOGFILE WHERE CMD...: run CMD until it succeeds, for up
# to READY_TIMEOUT_MS, failing early if PID exits. On timeout shows CMD's
# last try and dies with "NAME not ready WHERE after Ns".
wait_until() {
	local name=$1 pid=$2 logfile=$3 where=$4 deadline rc
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
	die "$name not ready $where after $((READY_TIMEOUT_MS / 1000))s"
}

# wait_ready NAME URL PID LOGFILE: poll URL until it answers 2xx (wait_until).
wait_ready() { wait_until "$1" "$3" "$4" "at $2" curl -sf -o /dev/null --max-time 1 "$2"; }

# bench_body BYTES: the backend's answer, BYTES long.
bench_body() {
	local body
	body=$(printf 'edge-agent-bench-%.0s' {1..10})
	echo "${body:0:$1}"
}

# start_nginx NAME TEMPLATE KEY=VALUE...: render TEMPLATE into
# $TMP/NAME/nginx.conf (with DIR and USER_DIRECTIVE besides the given keys),
# test it, start nginx on it; sets NGINX_PID.
start_nginx() {
	local name=$1 tmpl=$2 dir="$TMP/$1" user="# (not root: no user directive)"
	shift 2
	if ((EUID == 0)); then
		# As root nginx would drop workers to 'nobody', who cannot enter the
		# 0700 temp dir; keep the workers as the invoking user instead.
		user="user $(id -un) $(id -gn);"
	fi
	mkdir -p "$dir"
	render "$tmpl" "$dir/nginx.conf" "DIR=$dir" "USER_DIRECTIVE=$user" "$@"
	# shellcheck disable=SC2153 # NGINX_BIN is set by need_bins
	if ! "$NGINX_BIN" -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/configtest.log" 2>&1; then
		show_log "$dir/configtest.log"
		show_log "$dir/error.log"
		die "nginx ($name) config test failed"
	fi
	"$NGINX_BIN" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
	NGINX_PID=$!
	STARTED_PIDS+=("$NGINX_PID")
}

# need_edge_agent CMD...: unless EDGE_AGENT is set, use <repo>/bin/edge-agent,
# built with CMD (run in the repo) if it is missing; dies if it is not
# executable.
need_edge_agent() {
	if [[ -z $EDGE_AGENT ]]; then
		EDGE_AGENT="$REPO_ROOT/bin/edge-agent"
		if [[ ! -x $EDGE_AGENT ]]; then
			command -v "$1" >/dev/null 2>&1 || die "$EDGE_AGENT missing and '$1' not found to build it"
			log "building $EDGE_AGENT ($*)"
			(cd "$REPO_ROOT" && "$@") >&2 || die "$* failed"
		fi
	fi
	[[ -x $EDGE_AGENT ]] || die "edge-agent binary not found or not executable: $EDGE_AGENT"
}

# start_edge_agent CONFIG: run $EDGE_AGENT on CONFIG (log in
# $TMP/edge-agent.log) and wait for /readyz on ADMIN_PORT; sets EDGE_PID.
start_edge_agent() {
	log "starting edge-agent on 127.0.0.1:$EDGE_PORT (admin 127.0.0.1:$ADMIN_PORT): $EDGE_AGENT"
	"$EDGE_AGENT" run --config "$1" >"$TMP/edge-agent.log" 2>&1 &
	EDGE_PID=$!
	STARTED_PIDS+=("$EDGE_PID")
	wait_ready edge-agent "http://127.0.0.1:$ADMIN_PORT/readyz" "$EDGE_PID" "$TMP/edge-agent.log"
}

# ------------------------------------------------ load generators, numbers ---

# run_load OUTFILE CMD...: run the load generator CMD in the background and
# wait for it, so that INT/TERM are handled (and CMD killed by cleanup)
# without waiting for the whole run to finish. Returns CMD's exit status.
run_load() {
	local out=$1 rc=0
	shift
	"$@" >"$out" 2>&1 &
	LOADGEN_PID=$!
	wait "$LOADGEN_PID" || rc=$?
	LOADGEN_PID=
	return "$rc"
}

# run_wrk OUTFILE ARGS...: run_load with $WRK_BIN.
run_wrk() { run_load "$1" "$WRK_BIN" "${@:2}"; }

# run_failed TOOL TARGET RC RAW: report a load generator run that failed
# (exit status RC) or whose output RAW did not parse; sets FAILED.
run_failed() {
	log "$1 failed for $2 (exit $3); output:"
	cat "$4" >&2
	# shellcheck disable=SC2034 # the script's
	FAILED=1
}

# run_rounds RATIOS_FN: for each of ROUNDS rounds, the script's measure
# ROUND TARGET for each of TARGETS, then RATIOS_FN ROUND.
run_rounds() {
	local r t
	for ((r = 1; r <= ROUNDS; r++)); do
		for t in "${TARGETS[@]}"; do
			measure "$r" "$t"
		done
		"$1" "$r"
	done
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

# per_req TICKS REQUESTS DECIMALS -> CPU microseconds per request, or "" if
# REQUESTS is 0.
per_req() {
	awk -v d="$1" -v hz="$CLK_TCK" -v n="$2" -v f="%.${3}f" 'BEGIN { if (n > 0) printf f, d * 1000000 / hz / n }'
}

# parse_wrk FILE -> "rps p50_us p99_us requests sock_errors non2xx" (or "" if unparsable)
parse_wrk() {
	awk '
	function us(v,   n, u) {
		n = v + 0
		u = v; sub(/^[0-9.]+/, "", u)
		if (u == "us") return n
		if (u == "ms") return n * 1000
		if (u == "s")  return n * 1000000
		if (u == "m")  return n * 60000000
		if (u == "h")  return n * 3600000000
		return -1
	}
	/^Requests\/sec:/               { rps = $2 }
	/^[ \t]+50%[ \t]/               { p50 = us($2) }
	/^[ \t]+99%[ \t]/               { p99 = us($2) }
	/ requests in /                 { reqs = $1 }
	/Socket errors:/                { gsub(/,/, ""); sock = $4 + $6 + $8 + $10 }
	/Non-2xx or 3xx responses:/     { non2xx = $NF }
	END {
		if (rps == "" || p50 == "" || p99 == "" || reqs == "" || p50 < 0 || p99 < 0) exit 1
		printf "%s %.1f %.1f %d %d %d\n", rps, p50, p99, reqs, sock + 0, non2xx + 0
	}' "$1"
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

# or_na X -> X, or "n/a" if X is empty.
or_na() { if [[ -n ${1:-} ]]; then printf '%s' "$1"; else printf 'n/a'; fi; }

# bang FLAG -> "!" if FLAG is 1.
bang() { if [[ ${1:-0} == 1 ]]; then printf '!'; fi; }

# ------------------------------------- other processes, steal (QUIET=1) ---

# machine_sample: "<ms> <busy ticks> <steal ticks>" from /proc/stat, all CPUs;
# busy is user + nice + system + irq + softirq (this kernel's tick-based
# accounting charges softirq ticks to the task they interrupted as well).
machine_sample() {
	local _cpu user nice system _idle _iowait irq softirq steal _rest
	read -r _cpu user nice system _idle _iowait irq softirq steal _rest </proc/stat
	echo "$(now_ms) $((user + nice + system + irq + softirq)) $steal"
}

# busy_cores: machine CPU over one second, in cores (reads CLK_TCK).
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
# benchmark's own traffic. A process that ends while cat reads /proc is
# skipped (cat's failure must not fail the pipeline under pipefail).
foreign_ticks() {
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v skip=" $* " '{
		if (index(skip, " " $1 " ")) next
		sub(/^.*\) /, "")
		t += $12 + $13 + $14 + $15
	} END { printf "%d", t }'
}

# A measured run, with what other processes and the hypervisor took from it:
#
#   disturb_prepare PID...   # the benchmark's own processes; with QUIET=1
#                            # wait_quiet
#   (the script's own CPU samples)
#   disturb_begin [CMD...]   # sample other processes, run CMD, sample the machine
#   (the run)
#   disturb_end [CMD...]     # sample the machine, run CMD, sample other processes
#   (the script's own CPU samples)
#   disturb_record KEY ROUND TARGET
#
# disturb_prepare PID...: left out of the other processes' CPU: this shell
# (it reaps the load generator), PID... and the kernel's softirq threads
# (loopback traffic).
disturb_prepare() {
	mapfile -t DISTURB_OURS < <(
		echo "$$"
		printf '%s\n' "$@"
		pgrep '^ksoftirqd/' || true
	)
	[[ $QUIET == 0 ]] || wait_quiet
}

disturb_begin() {
	DISTURB_OTHER0=$(foreign_ticks "${DISTURB_OURS[@]}")
	(($# == 0)) || "$@"
	read -r -a DISTURB_MACHINE0 <<<"$(machine_sample)"
}

disturb_end() {
	read -r -a DISTURB_MACHINE1 <<<"$(machine_sample)"
	(($# == 0)) || "$@"
	DISTURB_OTHER1=$(foreign_ticks "${DISTURB_OURS[@]}")
}

# disturb_record KEY ROUND TARGET: set OTHER[KEY] and STEAL[KEY], the cores
# other processes and the hypervisor used over the run, and DISTURBED[KEY]:
# 1 if QUIET=1 and either was over its limit (0.1, 0.15 cores), logged.
disturb_record() {
	local key=$1 round=$2 target=$3 secs other steal disturbed
	secs=$(awk -v ms=$((DISTURB_MACHINE1[0] - DISTURB_MACHINE0[0])) 'BEGIN { printf "%.3f", ms / 1000 }')
	read -r other steal disturbed < <(awk -v hz="$CLK_TCK" -v s="$secs" \
		-v foreign=$((DISTURB_OTHER1 - DISTURB_OTHER0)) \
		-v steal=$((DISTURB_MACHINE1[2] - DISTURB_MACHINE0[2])) -v quiet="$QUIET" 'BEGIN {
			o = foreign / hz / s; if (o < 0) o = 0
			st = steal / hz / s
			printf "%.2f %.2f %d\n", o, st, (quiet == 1 && (o >= 0.1 || st >= 0.15))
		}')
	# shellcheck disable=SC2004,SC2034 # the script's associative arrays
	OTHER[$key]=$other STEAL[$key]=$steal DISTURBED[$key]=$disturbed
	if ((disturbed)); then
		log "round $round: $target: disturbed (other processes $other cores, steal $steal cores)"
	fi
}

# warn_other_loadgens: warn if another wrk, ghz or h2load is running.
warn_other_loadgens() {
	local others
	others=$(pgrep -a -x 'wrk|ghz|h2load' 2>/dev/null || true)
	if [[ -n $others ]]; then
		log "WARNING: other load generators are running; they will disturb the numbers:"
		printf '%s\n' "$others" >&2
	fi
}

# median_rounds: a round is disturbed if any of its TARGETS' runs was
# (DISTURBED); sets ROUND_BAD[ROUND] (0/1), USE_ROUNDS (the undisturbed
# rounds, or every round if none is) and MEDIAN_NOTE (which, in words).
# shellcheck disable=SC2034 # MEDIAN_NOTE is for the script
median_rounds() {
	local r t
	declare -gA ROUND_BAD=()
	USE_ROUNDS=()
	for ((r = 1; r <= ROUNDS; r++)); do
		ROUND_BAD[$r]=0
		for t in "${TARGETS[@]}"; do
			# shellcheck disable=SC2004 # DISTURBED is associative
			if ((DISTURBED[$r,$t])); then ROUND_BAD[$r]=1; fi
		done
		if ((!ROUND_BAD[$r])); then USE_ROUNDS+=("$r"); fi
	done
	MEDIAN_NOTE="${#USE_ROUNDS[@]} undisturbed round(s) of $ROUNDS"
	if ((${#USE_ROUNDS[@]} == 0)); then
		for ((r = 1; r <= ROUNDS; r++)); do USE_ROUNDS+=("$r"); done
		MEDIAN_NOTE="every round disturbed: all $ROUNDS round(s)"
	fi
}

# median_ratios: MEDIAN[NAME], for each of RATIO_NAMES, the median of
# RATIO[ROUND,NAME] over USE_ROUNDS.
median_ratios() {
	local name r vals
	declare -gA MEDIAN=()
	for name in "${RATIO_NAMES[@]}"; do
		vals=()
		for r in "${USE_ROUNDS[@]}"; do vals+=("${RATIO[$r,$name]}"); done
		MEDIAN[$name]=$(median "${vals[@]}")
	done
}

# target_median ARRAY TARGET -> median of ARRAY[ROUND,TARGET] over USE_ROUNDS,
# one decimal.
target_median() {
	local -n values=$1
	local r vals=()
	for r in "${USE_ROUNDS[@]}"; do vals+=("${values[$r,$2]}"); done
	round1 "$(median "${vals[@]}")"
}

# rounds_line NAME -> every round's RATIO of NAME, "!" after disturbed ones.
rounds_line() {
	local r line=""
	for ((r = 1; r <= ROUNDS; r++)); do
		line+="${line:+ }$(or_na "${RATIO[$r,$1]}")$(bang "${ROUND_BAD[$r]}")"
	done
	printf '%s' "$line"
}

# ------------------------------------- direct / nginx / edge-agent ratios ---

# shellcheck disable=SC2034 # for the scripts' RATIO_NAMES
PROXY_RATIO_NAMES=(nginx/direct edge-agent/direct edge-agent/nginx "edge-agent p99/nginx p99")

# proxy_ratios ROUND: RATIO[ROUND,NAME] for each of PROXY_RATIO_NAMES, from
# RPS and P99 (edge-agent's are missing with SKIP_EDGE=1).
proxy_ratios() {
	local r=$1
	RATIO["$r,nginx/direct"]=$(ratio "${RPS[$r,nginx]}" "${RPS[$r,direct]}")
	RATIO["$r,edge-agent/direct"]=$(ratio "${RPS[$r,edge-agent]:-}" "${RPS[$r,direct]}")
	RATIO["$r,edge-agent/nginx"]=$(ratio "${RPS[$r,edge-agent]:-}" "${RPS[$r,nginx]}")
	RATIO["$r,edge-agent p99/nginx p99"]=$(ratio "${P99[$r,edge-agent]:-}" "${P99[$r,nginx]}")
}

# ratio_label NAME -> "NAME:" for a p99 ratio, "NAME req/s:" otherwise.
ratio_label() {
	if [[ $1 == *p99* ]]; then printf '%s:' "$1"; else printf '%s req/s:' "$1"; fi
}

# ----------------------------------------------------------- JSON report ---

jnum() { if [[ -n ${1:-} && $1 != - ]]; then printf '%s' "$1"; else printf 'null'; fi; }
jbool() { if ((${1:-0})); then printf true; else printf false; fi; }

# jratios PREFIX: RATIO_NAMES as a JSON object, from RATIO[PREFIX NAME]
# ("N," for round N) or, with PREFIX "", from MEDIAN[NAME].
jratios() {
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

# json_fields ROUND TARGET FIELD=[TYPE:]ARRAY...: '"FIELD": VALUE, ...', each
# VALUE from ARRAY[ROUND,TARGET] or, for a per-target ARRAY (PORT, URL_PATH,
# the medians), ARRAY[TARGET]; TYPE is num (the default, jnum), str (quoted)
# or bool (jbool).
json_fields() {
	local r=$1 t=$2 spec field src type ref sep=""
	shift 2
	for spec in "$@"; do
		field=${spec%%=*} src=${spec#*=} type=num
		if [[ $src == *:* ]]; then type=${src%%:*} src=${src#*:}; fi
		ref="${src}[$r,$t]"
		[[ -v $ref ]] || ref="${src}[$t]"
		case $type in
		str) printf '%s"%s": "%s"' "$sep" "$field" "${!ref}" ;;
		bool) printf '%s"%s": %s' "$sep" "$field" "$(jbool "${!ref}")" ;;
		*) printf '%s"%s": %s' "$sep" "$field" "$(jnum "${!ref}")" ;;
		esac
		sep=", "
	done
}

# json_rounds [--disturbed] FIELD=[TYPE:]ARRAY...: the "latency_unit" and
# "rounds" members: per round its number (whether it was disturbed, from
# ROUND_BAD, with --disturbed), an object per target of TARGETS ("target",
# then the FIELDs, see json_fields) and the round's ratios.
json_rounds() {
	local disturbed=0 r t n
	if [[ $1 == --disturbed ]]; then
		disturbed=1
		shift
	fi
	printf '  "latency_unit": "us",\n'
	printf '  "rounds": [\n'
	for ((r = 1; r <= ROUNDS; r++)); do
		if ((disturbed)); then
			printf '    {"round": %d, "disturbed": %s, "targets": [\n' "$r" "$(jbool "${ROUND_BAD[$r]}")"
		else
			printf '    {"round": %d, "targets": [\n' "$r"
		fi
		n=0
		for t in "${TARGETS[@]}"; do
			((n++ == 0)) || printf ',\n'
			printf '      {"target": "%s", %s}' "$t" "$(json_fields "$r" "$t" "$@")"
		done
		printf '\n    ], "ratios": %s}' "$(jratios "$r,")"
		((r == ROUNDS)) || printf ','
		printf '\n'
	done
	printf '  ],\n'
}

# json_medians FIELD=ARRAY...: the "median_rounds" (USE_ROUNDS) and "medians"
# members: per target of TARGETS, each FIELD from ARRAY[TARGET].
json_medians() {
	local t n=0
	printf '  "median_rounds": [%s],\n' "$(IFS=,; echo "${USE_ROUNDS[*]}")"
	printf '  "medians": {'
	for t in "${TARGETS[@]}"; do
		((n++ == 0)) || printf ', '
		printf '"%s": {%s}' "$t" "$(json_fields "" "$t" "$@")"
	done
	printf '},\n'
}
