#!/usr/bin/env bash
# handoff.sh: a cross-process handoff. zd-handoff gives the listening sockets
# to an independent new zd-run; once it is ready the old zd-run is stopped.
# Run with --help for the details.
set -euo pipefail

ZD_PROG=${ZD_PROG:-handoff.sh}
# shellcheck source=zd-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/zd-lib.sh"

usage() {
	cat <<EOF
usage: $ZD_PROG start  --dir DIR --listen ADDR... [options] -- ZD_RUN_FLAGS... -- CMD [ARGS]
       $ZD_PROG deploy --dir DIR [--root ROOT ARTIFACT] [options] -- ZD_RUN_FLAGS... -- CMD [ARGS]
       $ZD_PROG status --dir DIR
       $ZD_PROG stop   --dir DIR

Runs zd-run under zd-handoff so that a whole new zd-run (another binary,
other flags, another release) can take over the listening sockets from the
running one, with no connection refused: the sockets are created once and
only ever passed on.

  start   zd-handoff listen ADDR... -- zd-handoff serve --notify -- zd-run
          --state-dir DIR/g1 ZD_RUN_FLAGS... -- CMD: zd-run takes the sockets
          from LISTEN_FDS; waits until it is healthy
  deploy  (with --root ROOT ARTIFACT: install ARTIFACT as ROOT/releases/N and
          point ROOT/current at it, as deploy-release.sh does; CMD must run
          through ROOT/current) then zd-handoff take --release -- zd-handoff
          serve --notify -- zd-run --state-dir DIR/gN ...: the new zd-run
          gets the same sockets and starts its own workers. Once it is ready
          (it sent READY=1) the old serve stops the old zd-run (TERM: it
          drains its workers) and exits. If the new zd-run fails first, or is
          not ready within --timeout, the old one goes on serving, the link
          goes back, and deploy exits 3. If it is unhealthy after taking
          over, deploy hands the sockets to the previous release again
          (exit 5).
  status  which generation serves (DIR/live), its serve pid, zdctl status
  stop    TERM to the serving zd-handoff serve (it stops zd-run, which drains)

  DIR/handoff.sock   the handoff socket
  DIR/gN/            state dir of the zd-run of handoff generation N
  DIR/gN.log         its log (zd-handoff, zd-run and the workers)
  DIR/live           symlink to the live gN: zdctl --state-dir DIR/live ...

ZD_RUN_FLAGS are zd-run's flags, without --listen (the sockets come from
zd-handoff), --state-dir or --name (DIR/gN is each generation's).

options:
  --dir DIR        where the handoff socket, state dirs and logs live
                   (env ZD_HANDOFF_DIR); keep it short (unix socket paths
                   are limited to 107 bytes)
  --listen ADDR    start: a socket to create ([NAME=]tcp://HOST:PORT,
                   unix:///path, ... as zd-handoff listen); repeatable
  --root ROOT      deploy: the releases folder (ROOT/releases, ROOT/current)
  --timeout D      how long a new zd-run gets to be ready, and each health
                   wait (default 60s; seconds or 30s, 2m, 1h)
  --grace D        how long the old zd-run gets to stop after TERM before
                   KILL; must exceed zd-run's own --grace (default 60s)
  -h, --help       this text

exit codes:
  0  done (deploy: the new zd-run serves, healthy; the old one has stopped)
  1  failure: nothing changed (already running, cannot install, a tool
     missing, the first zd-run did not start: see DIR/g1.log)
  2  usage
  3  deploy: the new zd-run failed or was not ready in time; the old one
     still serves; ROOT/current points at the old release again
  4  not running (nothing answers on DIR/handoff.sock)
  5  deploy: the new zd-run took over but was unhealthy; the sockets went
     back to a zd-run of the previous release, which serves, healthy
  6  stop: the old zd-run did not stop within --grace
  8  deploy: the way back failed too; the messages say what to check
EOF
}

[ $# -gt 0 ] || zd_usage "name a command: start, deploy, status or stop"
cmd=$1
shift
case $cmd in
-h | --help) usage; exit 0 ;;
start | deploy | status | stop) ;;
*) zd_usage "unknown command $cmd: use start, deploy, status or stop" ;;
esac

dir=${ZD_HANDOFF_DIR:-}
root=
artifact=
timeout=60s
grace=60s
declare -a listen=() runargs=()
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--dir) zd_need_arg "$1" $#; dir=$2; shift 2 ;;
	--listen) zd_need_arg "$1" $#; listen+=("$2"); shift 2 ;;
	--root) zd_need_arg "$1" $#; root=$2; shift 2 ;;
	--timeout) zd_need_arg "$1" $#; timeout=$2; shift 2 ;;
	--grace) zd_need_arg "$1" $#; grace=$2; shift 2 ;;
	--) shift; runargs=("$@"); break ;;
	-*) zd_usage "unknown flag $1 (zd-run's flags go after --)" ;;
	*)
		[ -z "$artifact" ] || zd_usage "one ARTIFACT only (got $artifact and $1)"
		artifact=$1
		shift
		;;
	esac
done
[ -n "$dir" ] || zd_usage "--dir DIR is required"
timeout_s=$(zd_seconds "$timeout")
grace_s=$(zd_seconds "$grace")
case $cmd in
start)
	[ "${#listen[@]}" -gt 0 ] || zd_usage "start needs at least one --listen ADDR"
	if [ -n "$artifact" ] || [ -n "$root" ]; then zd_usage "start takes no ARTIFACT or --root (deploy does)"; fi
	;;
deploy)
	[ "${#listen[@]}" -eq 0 ] || zd_usage "deploy takes no --listen: the new zd-run gets the running one's sockets"
	if [ -n "$artifact" ] || [ -n "$root" ]; then
		if [ -z "$artifact" ] || [ -z "$root" ]; then zd_usage "give both --root ROOT and ARTIFACT, or neither"; fi
	fi
	;;
status | stop)
	if [ "${#runargs[@]}" -gt 0 ] || [ -n "$artifact" ]; then zd_usage "$cmd takes only --dir"; fi
	;;
esac
if [ "$cmd" = start ] || [ "$cmd" = deploy ]; then
	[ "${#runargs[@]}" -gt 0 ] || zd_usage "$cmd needs zd-run's flags and command after --: -- --workers 4 -- DIR/current/bin/app"
	for a in "${runargs[@]}"; do
		case $a in
		--) break ;;
		--listen | --listen=* | -l | --state-dir | --state-dir=* | --name | --name=*)
			zd_usage "zd-run flag $a is set by $ZD_PROG (the sockets come from zd-handoff, the state dir is DIR/gN)" ;;
		esac
	done
fi
zd_need zd-handoff zd-run zdctl setsid flock realpath systemd-notify
mkdir -p "$dir"
chmod 0700 "$dir"
dir=$(realpath "$dir")
sock=$dir/handoff.sock

# serve_pid: sets $spid to the pid of the zd-handoff serve answering on the
# socket ("" if none) and $rc to zd-handoff ls's exit status (4: nothing
# answers).
rc=0
spid=
serve_pid() {
	local out
	rc=0
	spid=
	out=$(zd-handoff ls --socket "$sock" --json --timeout 5s 2>/dev/null) || rc=$?
	if [ "$rc" -eq 0 ]; then spid=$(printf '%s\n' "$out" | zd_json_field pid); fi
	return 0
}

# next_gen: one above the highest DIR/gN.
next_gen() {
	local max=0 d n
	for d in "$dir"/g*/ "$dir"/g*.log; do
		[ -e "$d" ] || continue
		n=${d%/}
		n=${n##*/g}
		n=${n%.log}
		[[ $n =~ ^[0-9]+$ ]] && [ "$n" -gt "$max" ] && max=$n
	done
	printf '%d\n' "$((max + 1))"
}

# The readiness gate between zd-handoff serve and zd-run: zd-run reports
# READY=1 once one worker of its first generation is ready even if the others
# failed (a service under systemd must come up degraded rather than not at
# all), so serve is not told READY=1 by zd-run but by the gate, once zdctl health says
# every slot has a ready worker. Then a release that cannot start never takes
# the sockets over: the old serve's --release-timeout runs out and it keeps
# serving. The gate's subshell outlives the exec; zd-run reaps it.
# shellcheck disable=SC2016 # expanded by the gate's own bash, not here
gate='ns=$NOTIFY_SOCKET st=$1 t=$2; shift 2; unset NOTIFY_SOCKET
( zdctl --state-dir "$st" health --wait "${t}s" >/dev/null 2>&1 && NOTIFY_SOCKET=$ns systemd-notify --ready ) &
exec "$@"'

# serve_args GEN: the zd-handoff serve command running zd-run for GEN.
serve_args() {
	serve_cmd=(zd-handoff serve --socket "$sock" --notify --release-timeout "${timeout_s}s" --grace "${grace_s}s"
		-- bash -c "$gate" zd-handoff-gate "$dir/g$1" "$timeout_s" zd-run --state-dir "$dir/g$1" "${runargs[@]}")
}

# point_live GEN: DIR/live -> gGEN, in one rename.
point_live() {
	ln -sfn "g$1" "$dir/.live.$$" && mv -Tf "$dir/.live.$$" "$dir/live"
}

# log_tail GEN: the end of gGEN's log, indented, for error messages.
log_tail() {
	tail -n 5 "$dir/g$1.log" 2>/dev/null | sed 's/^/    /' >&2 || true
}

# wait_gone PID SECONDS: wait until PID has exited; 1 if it has not in time.
wait_gone() {
	local deadline=$((SECONDS + $2))
	while kill -0 "$1" 2>/dev/null; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.2
	done
}

# handoff_to GEN OLDPID OLDGEN: start GEN's serve with take --release and
# wait until it has taken over (0), or it failed (1, with $why) while OLDPID
# (the serve of generation OLDGEN) serves on.
handoff_to() {
	local gen=$1 old=$2 from=$3 pid deadline
	serve_args "$gen"
	setsid zd-handoff take --socket "$sock" --release --timeout "${timeout_s}s" -- "${serve_cmd[@]}" \
		>>"$dir/g$gen.log" 2>&1 </dev/null 9>&- &
	pid=$!
	zd_log "generation $gen: zd-handoff take --release (pid $pid) starting zd-run --state-dir $dir/g$gen; log $dir/g$gen.log"
	# The old serve decides when the new one is too late: its
	# --release-timeout, as given when it started (in DIR/gN.timeout).
	local bound=$timeout_s prev
	prev=$(cat "$dir/g$from.timeout" 2>/dev/null || true)
	[[ $prev =~ ^[0-9]+$ ]] && [ "$prev" -gt "$bound" ] && bound=$prev
	printf '%s\n' "$timeout_s" >"$dir/g$gen.timeout"
	deadline=$((SECONDS + bound + 15))
	while :; do
		if ! kill -0 "$pid" 2>/dev/null; then
			local st=0
			wait "$pid" || st=$?
			why="generation $gen exited (status $st) before it took over"
			return 1
		fi
		serve_pid
		[ "$spid" = "$pid" ] && break
		if [ "$SECONDS" -ge "$deadline" ]; then
			kill -TERM "$pid" 2>/dev/null || true
			why="generation $gen did not take over within $((bound + 15))s"
			return 1
		fi
		sleep 0.2
	done
	zd_log "generation $gen answers on $sock; waiting for the old serve (pid $old) to stop its zd-run"
	if ! wait_gone "$old" "$((grace_s + 10))"; then
		zd_log "warning: the old serve (pid $old) is still running after $((grace_s + 10))s"
	fi
	return 0
}

case $cmd in
status)
	serve_pid
	pid=$spid
	[ "$rc" -ne 4 ] || zd_die 4 "not running: nothing answers on $sock"
	[ "$rc" -eq 0 ] || zd_die 1 "zd-handoff ls --socket $sock exited $rc"
	printf 'live: %s (serve pid %s)\n' "$(readlink "$dir/live" || echo '?')" "$pid"
	exec zdctl --state-dir "$dir/live" status
	;;
stop)
	serve_pid
	pid=$spid
	[ "$rc" -ne 4 ] || zd_die 4 "not running: nothing answers on $sock"
	[ -n "$pid" ] || zd_die 1 "zd-handoff ls --socket $sock exited $rc"
	kill -TERM "$pid"
	zd_log "sent TERM to zd-handoff serve (pid $pid); waiting up to ${grace_s}s for zd-run to drain"
	wait_gone "$pid" "$((grace_s + 10))" || zd_die 6 "zd-handoff serve (pid $pid) still runs after $((grace_s + 10))s"
	zd_log "stopped"
	exit 0
	;;
esac

exec 9>>"$dir/.handoff.lock"
flock -n 9 || zd_die 1 "another $ZD_PROG runs on $dir" "wait for it to finish"

if [ "$cmd" = start ]; then
	serve_pid
	[ "$rc" -eq 4 ] || zd_die 1 "already running: zd-handoff serve (pid ${spid:-?}) answers on $sock" "use '$ZD_PROG deploy', or '$ZD_PROG stop' first"
	gen=$(next_gen)
	serve_args "$gen"
	printf '%s\n' "$timeout_s" >"$dir/g$gen.timeout"
	setsid zd-handoff listen "${listen[@]}" -- "${serve_cmd[@]}" >>"$dir/g$gen.log" 2>&1 </dev/null 9>&- &
	pid=$!
	zd_log "generation $gen: zd-handoff listen ${listen[*]} (pid $pid); log $dir/g$gen.log"
	st=0
	zdctl --state-dir "$dir/g$gen" health --wait "${timeout_s}s" >/dev/null 2>&1 || st=$?
	if [ "$st" -ne 0 ] || ! kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		log_tail "$gen"
		zd_die 1 "generation $gen did not get healthy within ${timeout_s}s (zdctl health exited $st)" "read $dir/g$gen.log"
	fi
	point_live "$gen"
	printf 'started generation %s (serve pid %s): zdctl --state-dir %s status\n' "$gen" "$pid" "$dir/live"
	exit 0
fi

# deploy
serve_pid
old=$spid
[ "$rc" -ne 4 ] || zd_die 4 "not running: nothing answers on $sock" "run '$ZD_PROG start' first"
[ -n "$old" ] || zd_die 1 "zd-handoff ls --socket $sock exited $rc"
old_gen=$(readlink "$dir/live" || true)
old_gen=${old_gen#g}
old_link=
if [ -n "$root" ]; then
	[ -d "$root" ] || zd_die 1 "--root $root: no such directory"
	root=$(realpath "$root")
	mkdir -p "$root/releases"
	old_link=$(readlink "$root/current" || true)
	[ -n "$old_link" ] || zd_die 1 "$root/current is not a symlink; nothing changed" "make it one: ln -sfn releases/N $root/current"
	n=$(zd_next_release "$root")
	zd_log "installing $artifact as release $n ($root/releases/$n)"
	zd_install_release "$artifact" "$root" "$n"
	zd_point_current "$root" "releases/$n"
	zd_log "current -> releases/$n (was $old_link)"
fi

gen=$(next_gen)
why=
if ! handoff_to "$gen" "$old" "${old_gen:-0}"; then
	log_tail "$gen"
	rm -rf "${dir:?}/g$gen"
	[ -z "$old_link" ] || { zd_point_current "$root" "$old_link"; zd_log "current -> $old_link again"; }
	zd_die 3 "handoff aborted: $why; generation ${old_gen:-?} (serve pid $old) still serves" "read $dir/g$gen.log"
fi
st=0
zdctl --state-dir "$dir/g$gen" health --wait "${timeout_s}s" >/dev/null 2>&1 || st=$?
point_live "$gen"
if [ "$st" -eq 0 ]; then
	[ -z "$old_gen" ] || rm -rf "${dir:?}/g$old_gen"
	printf 'deployed: generation %s serves (serve pid %s): zdctl --state-dir %s status\n' "$gen" "$(zd-handoff ls --socket "$sock" --json 2>/dev/null | zd_json_field pid)" "$dir/live"
	exit 0
fi

# The new zd-run took over but is not healthy: hand the sockets on again.
why="generation $gen took over but zdctl health exited $st"
zd_log "$why; handing the sockets to a zd-run of the previous release"
[ -z "$old_link" ] || { zd_point_current "$root" "$old_link"; zd_log "current -> $old_link again"; }
back=$((gen + 1))
serve_pid
if ! handoff_to "$back" "$spid" "$gen"; then
	zd_die 8 "the way back failed: $why, then $back: see $dir/g$back.log" "zdctl --state-dir $dir/live status"
fi
st=0
zdctl --state-dir "$dir/g$back" health --wait "${timeout_s}s" >/dev/null 2>&1 || st=$?
point_live "$back"
[ "$st" -eq 0 ] || zd_die 8 "the way back failed: generation $back is not healthy either (zdctl health exited $st)" "zdctl --state-dir $dir/live status"
rm -rf "${dir:?}/g$gen"
[ -z "$old_gen" ] || rm -rf "${dir:?}/g$old_gen"
zd_die 5 "rolled back: $why; generation $back (the previous release) serves, healthy" "read $dir/g$gen.log"
