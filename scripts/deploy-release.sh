#!/usr/bin/env bash
# deploy-release.sh: install a release next to the others, switch the
# `current` symlink to it, reload zd-run, wait for health, and roll back
# (link and service) if anything fails. Run with --help for the details.
set -euo pipefail

ZD_PROG=${ZD_PROG:-deploy-release.sh}
# shellcheck source=zd-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/zd-lib.sh"

usage() {
	cat <<EOF
usage: $ZD_PROG --root DIR [--name NAME | --state-dir DIR] [options] ARTIFACT

Deploys ARTIFACT (a tar file, or a directory) as the next release of the
service whose releases live in DIR, with zd-run and zdctl:

  DIR/releases/N   one directory per release, N counting up from 1
  DIR/current      symlink to releases/N; zd-run's command must run through
                   it, e.g. zd-run --name shop ... -- DIR/current/bin/app

  1. check that zd-run runs and that its release is under DIR/releases
  2. unpack or copy ARTIFACT into DIR/releases/N (under a temporary name
     first, so no half-written release is ever seen)
  3. point DIR/current at releases/N (a new link renamed over the old one)
  4. zdctl reload --strategy STRATEGY: zd-run starts the new workers and
     refuses a release whose workers crash or are not ready (the old ones
     go on serving)
  5. check that the new generation runs releases/N, then wait until
     zdctl health says healthy and --health-cmd (if given) passes, watching
     for --observe seconds that health stays so and no worker is restarted
     (a crash)
  On a failure in 4 the link goes back; in 5 the link goes back and the
  previous release is reloaded (the service is rolled back too).

options:
  --root DIR            releases and the current link (env ZD_DEPLOY_ROOT)
  --name NAME           zd-run's --name (env ZD_NAME)
  --state-dir DIR       zd-run's --state-dir (env ZD_STATE_DIR)
  --strategy S          rolling, blue-green or exclusive (stop all, then
                        start all; behind zd-queue, which holds requests
                        meanwhile) (default: blue-green)
  --timeout D           bound of the reload and of each health wait
                        (default 60s; D is seconds or 30s, 2m, 1h)
  --observe D           after the reload, the service must stay healthy
                        this long (default 3s; 0: no watching)
  --health-cmd CMD      a shell command that must also pass (exit 0) after
                        the reload, e.g. 'curl -fsS http://127.0.0.1:8080/healthz';
                        retried until --timeout
  --keep N              releases kept in DIR/releases, older ones removed
                        (never current or previous) (default 5; 0: keep all)
  -h, --help            this text

exit codes:
  0  deployed: releases/N serves and is healthy
  1  failed before anything changed (artifact unreadable, another deploy
     running, zd-run's release not under DIR/releases, a tool missing)
  2  usage: bad flags or arguments; nothing changed
  3  the new release was refused (reload aborted: its workers crashed or
     were not ready); current points back at the old release, which serves
  4  zd-run is not running (nothing answers on run.sock); nothing changed
  5  the new release was unhealthy after the switch; rolled back: current
     points at the old release again and the old release serves, healthy
  8  the rollback failed too: the service needs attention; the messages
     say what was done and what to check
EOF
}

root=${ZD_DEPLOY_ROOT:-}
# rolling.sh and blue-green.sh run this script with ZD_FIXED_STRATEGY set:
# the strategy is theirs, and --strategy is refused.
fixed_strategy=${ZD_FIXED_STRATEGY:-}
strategy=${fixed_strategy:-blue-green}
timeout=60s
observe=3s
health_cmd=
keep=5
artifact=
declare -a ctl=()
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--root) zd_need_arg "$1" $#; root=$2; shift 2 ;;
	--name) zd_need_arg "$1" $#; ctl+=(--name "$2"); shift 2 ;;
	--state-dir) zd_need_arg "$1" $#; ctl+=(--state-dir "$2"); shift 2 ;;
	--strategy | --strategy=*)
		[ -z "$fixed_strategy" ] || zd_usage "the strategy is $fixed_strategy here; use deploy-release.sh --strategy S for another"
		[ "$1" = --strategy ] || zd_usage "unknown flag $1"
		zd_need_arg "$1" $#; strategy=$2; shift 2
		;;
	--timeout) zd_need_arg "$1" $#; timeout=$2; shift 2 ;;
	--observe) zd_need_arg "$1" $#; observe=$2; shift 2 ;;
	--health-cmd) zd_need_arg "$1" $#; health_cmd=$2; shift 2 ;;
	--keep) zd_need_arg "$1" $#; keep=$2; shift 2 ;;
	--) shift; break ;;
	-*) zd_usage "unknown flag $1" ;;
	*)
		[ -z "$artifact" ] || zd_usage "one ARTIFACT only (got $artifact and $1)"
		artifact=$1
		shift
		;;
	esac
done
if [ $# -gt 0 ]; then
	if [ -n "$artifact" ] || [ $# -ne 1 ]; then zd_usage "one ARTIFACT only"; fi
	artifact=$1
fi
[ -n "$artifact" ] || zd_usage "name the release to deploy: a tar file or a directory"
[ -n "$root" ] || zd_usage "--root DIR is required (the folder holding releases/ and current)"
case $strategy in
rolling | blue-green) reload_args=(--strategy "$strategy") ;;
exclusive) reload_args=(--exclusive) ;;
*) zd_usage "--strategy $strategy: use rolling, blue-green or exclusive" ;;
esac
[[ $keep =~ ^[0-9]+$ ]] || zd_usage "--keep $keep: use a number (0 keeps all)"
timeout_s=$(zd_seconds "$timeout")
observe_s=$(zd_seconds "$observe" 0)
zd_need zdctl tar flock realpath
[ -d "$root" ] || zd_die 1 "--root $root: no such directory" "create it with a releases/ folder and a current link, and start zd-run with its command under $root/current"
root=$(realpath "$root")
mkdir -p "$root/releases"
zd_lock "$root"

# run_zdctl ARGS...: zdctl for our zd-run, its output on stderr (stdout is
# left for nothing but this script's own result); its exit status in $rc,
# never fatal.
rc=0
run_zdctl() {
	rc=0
	zdctl "${ctl[@]}" "$@" >&2 || rc=$?
}

# quiet_zdctl ARGS...: run_zdctl without the output (the exit status says it).
quiet_zdctl() {
	rc=0
	zdctl "${ctl[@]}" "$@" >/dev/null 2>&1 || rc=$?
}

# serving_release: the release zd-run serves now (from zdctl status --json).
serving_release() {
	zdctl "${ctl[@]}" status --json 2>/dev/null | zd_json_field release
}

# release_number PATH: N when PATH is under $root/releases/N/, else "".
release_number() {
	local rest=${1#"$root"/releases/}
	[ "$rest" != "$1" ] || return 0
	rest=${rest%%/*}
	[[ $rest =~ ^[0-9]+$ ]] && printf '%s\n' "$rest"
	return 0
}

# healthy_for SECONDS: zdctl health must say healthy (or reloading) at every
# look for SECONDS; --health-cmd must pass (retried until the timeout).
healthy_for() {
	local secs=$1 deadline
	quiet_zdctl health --wait "${timeout_s}s"
	[ "$rc" -eq 0 ] || { why="zdctl health --wait ${timeout_s}s exited $rc (5: degraded, 6: not healthy in time)"; return 1; }
	if [ -n "$health_cmd" ]; then
		deadline=$((SECONDS + timeout_s))
		until bash -c "$health_cmd" >/dev/null 2>&1; do
			[ "$SECONDS" -lt "$deadline" ] || { why="--health-cmd did not pass within ${timeout_s}s: $health_cmd"; return 1; }
			sleep 0.5
		done
	fi
	# A crashed worker is respawned within a fraction of a second, which a
	# look at health can miss: the restart count cannot.
	local r0 r
	r0=$(restarts)
	deadline=$((SECONDS + secs))
	while [ "$SECONDS" -lt "$deadline" ]; do
		quiet_zdctl health
		[ "$rc" -eq 0 ] || { why="zdctl health exited $rc within ${secs}s of the reload (a worker crashed?)"; return 1; }
		r=$(restarts)
		if [ "${r:-0}" -gt "${r0:-0}" ]; then
			why="workers were restarted $((r - r0)) times within ${secs}s of the reload (they crash)"
			return 1
		fi
		sleep 0.5
	done
	return 0
}

# restarts: how many times zd-run has restarted crashed workers so far.
restarts() {
	zdctl "${ctl[@]}" status --json 2>/dev/null | zd_json_field restarts
}

# 1. zd-run runs, and runs a release of ours.
quiet_zdctl health
case $rc in
0 | 5) ;;
4) zd_die 4 "zd-run is not running (zdctl ${ctl[*]} health exits 4); nothing changed" "start zd-run first, or pass the --name/--state-dir it runs with" ;;
*) zd_die 1 "zdctl ${ctl[*]} health exited $rc; nothing changed" ;;
esac
old_release=$(serving_release)
old_n=$(release_number "$old_release")
[ -n "$old_n" ] || zd_die 1 "zd-run runs $old_release, which is not under $root/releases/N; nothing changed" \
	"is --root right? zd-run's command must run through $root/current (e.g. $root/current/bin/app)"
old_link=$(readlink "$root/current" || true)
[ -n "$old_link" ] || zd_die 1 "$root/current is not a symlink; nothing changed" "make it one: ln -sfn releases/$old_n $root/current"

# 2. install.
n=$(zd_next_release "$root")
zd_log "installing $artifact as release $n ($root/releases/$n)"
zd_install_release "$artifact" "$root" "$n"

# 3. switch the link.
zd_point_current "$root" "releases/$n"
zd_log "current -> releases/$n (was $old_link); reloading with ${reload_args[*]}"

# restore_link: point current back at what it was.
restore_link() {
	zd_point_current "$root" "$old_link"
	zd_log "current -> $old_link again"
}

# 4. reload.
run_zdctl reload "${reload_args[@]}" --timeout "${timeout_s}s"
case $rc in
0) ;;
3)
	restore_link
	zd_die 3 "release $n refused: the reload aborted (see zdctl's message above); release $old_n still serves" \
		"run $root/releases/$n by hand to see why it fails at start; remove it with rm -rf $root/releases/$n"
	;;
4)
	restore_link
	zd_die 4 "zd-run stopped answering during the deploy; release $n not deployed" "check zd-run's log; start it again"
	;;
*) why="zdctl reload exited $rc" ;;
esac

# 5. check what serves, and that it stays healthy.
if [ "$rc" -eq 0 ]; then
	now=$(serving_release)
	if [ "$(release_number "$now")" != "$n" ]; then
		why="after the reload zd-run runs $now, not release $n"
	elif healthy_for "$observe_s"; then
		zd_prune "$root" "$keep" "$n" "$old_n"
		zd_log "deployed release $n: serving and healthy"
		printf 'deployed release %s (%s)\n' "$n" "$now"
		exit 0
	fi
fi

# Roll back: the old link, then reload the old release.
zd_log "release $n failed: $why; rolling back to $old_link"
restore_link
run_zdctl reload "${reload_args[@]}" --timeout "${timeout_s}s"
if [ "$rc" -ne 0 ]; then
	zd_die 8 "rollback failed: zdctl reload of $old_link exited $rc after release $n failed ($why)" \
		"look at zdctl ${ctl[*]} status; current points at $old_link again"
fi
now=$(serving_release)
if [ "$(release_number "$now")" != "$old_n" ]; then
	zd_die 8 "rollback failed: zd-run runs $now, not release $old_n, after release $n failed ($why)" "look at zdctl ${ctl[*]} status"
fi
if ! healthy_for 0; then
	zd_die 8 "rollback failed: release $old_n is back but unhealthy ($why)" "look at zdctl ${ctl[*]} status"
fi
zd_die 5 "release $n rolled back: $why; release $old_n serves again and is healthy" \
	"look at the workers' logs of release $n; remove it with rm -rf $root/releases/$n"
