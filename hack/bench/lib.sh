# shellcheck shell=bash
# Shared by run.sh and grpc.sh: logging, cleanup of the processes a
# benchmark started, template rendering, readiness helpers.
#
# The sourcing script sets BENCH_TAG (log prefix) before sourcing, then TMP
# and KEEP_TMP, appends every server it starts to STARTED_PIDS, and sets
# LOADGEN_PID while a load generator (wrk, ghz) runs.

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
