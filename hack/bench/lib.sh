# shellcheck shell=bash
# Shared by run.sh, grpc.sh and policy.sh: logging, cleanup of the processes
# a benchmark started, template rendering, readiness helpers; at the end the
# wrk harness helpers of run.sh and policy.sh (wait_ready, run_wrk,
# cpu_ticks, parse_wrk, ratio, median).
#
# The sourcing script sets BENCH_TAG (log prefix) before sourcing, then TMP
# and KEEP_TMP, appends every server it starts to STARTED_PIDS, and sets
# LOADGEN_PID while a load generator (wrk, ghz) runs. wait_ready reads
# READY_TIMEOUT_MS and run_wrk WRK_BIN.

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

# now_ms: wall clock in milliseconds (bash 5 $EPOCHREALTIME).
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

# wait_ready NAME URL PID LOGFILE: poll URL until it answers 2xx, for up to
# READY_TIMEOUT_MS, failing early if PID exits.
wait_ready() {
	local name=$1 url=$2 pid=$3 logfile=$4 deadline rc
	deadline=$(($(now_ms) + READY_TIMEOUT_MS))
	while (($(now_ms) < deadline)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			rc=0
			wait "$pid" 2>/dev/null || rc=$?
			show_log "$logfile"
			die "$name exited during startup (exit status $rc)"
		fi
		if curl -sf -o /dev/null --max-time 1 "$url"; then
			return 0
		fi
		sleep 0.1
	done
	show_log "$logfile"
	die "$name not ready at $url after $((READY_TIMEOUT_MS / 1000))s"
}

# run_wrk OUTFILE ARGS...: run wrk in the background and wait for it, so that
# INT/TERM are handled (and wrk killed by cleanup) without waiting for the
# whole run to finish. Returns wrk's exit status.
run_wrk() {
	local out=$1 rc=0
	shift
	"$WRK_BIN" "$@" >"$out" 2>&1 &
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
