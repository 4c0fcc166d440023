# shellcheck shell=bash
# zd-lib.sh: what the deploy scripts in this folder share (sourced, not run).
# Releases live in ROOT/releases/N (N counts up from 1); ROOT/current is a
# symlink to releases/N, the path zd-run's command runs through.

ZD_PROG=${ZD_PROG:-${0##*/}}

# zd_log MESSAGE...: one line on stderr, prefixed with the script's name.
zd_log() { printf '%s: %s\n' "$ZD_PROG" "$*" >&2; }

# zd_die CODE MESSAGE [HINT]: say what went wrong (and what to do), exit CODE.
zd_die() {
	local code=$1 msg=$2 hint=${3:-}
	printf '%s: %s\n' "$ZD_PROG" "$msg" >&2
	if [ -n "$hint" ]; then printf 'hint: %s\n' "$hint" >&2; fi
	exit "$code"
}

# zd_usage MESSAGE: a usage error (exit 2).
zd_usage() { zd_die 2 "$1" "run '$ZD_PROG --help'"; }

# zd_need_arg FLAG COUNT: a flag's value must follow it.
zd_need_arg() { [ "$2" -ge 2 ] || zd_usage "$1 needs a value"; }

# zd_seconds DURATION [MIN]: whole seconds of 30, 30s, 2m, 1h (at least MIN,
# default 1).
zd_seconds() {
	local d=$1 min=${2:-1} n unit
	if [[ $d =~ ^([0-9]+)(s|m|h)?$ ]]; then
		n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]}
		case $unit in
		m) n=$((n * 60)) ;;
		h) n=$((n * 3600)) ;;
		esac
		[ "$n" -ge "$min" ] || zd_usage "duration $d: must be at least ${min}s"
		printf '%d\n' "$n"
		return
	fi
	zd_usage "duration $d: use seconds (30) or 30s, 2m, 1h"
}

# zd_need CMD...: every command must be on PATH.
zd_need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || zd_die 1 "$c is not on PATH" "install zd (make build; bin/ on PATH) and the tools this script uses"
	done
}

# zd_lock ROOT: one deploy at a time per ROOT (the lock ends with the script).
zd_lock() {
	exec 9>>"$1/.deploy.lock" || zd_die 1 "cannot open the lock file $1/.deploy.lock" "check that ROOT is writable"
	flock -n 9 || zd_die 1 "another deploy is running on $1 (it holds $1/.deploy.lock)" "wait for it to finish"
}

# zd_next_release ROOT: the next release number (one above the highest).
zd_next_release() {
	local max=0 d n
	for d in "$1"/releases/*/; do
		[ -d "$d" ] || continue
		n=${d%/}
		n=${n##*/}
		[[ $n =~ ^[0-9]+$ ]] && [ "$n" -gt "$max" ] && max=$n
	done
	printf '%d\n' "$((max + 1))"
}

# zd_install_release ARTIFACT ROOT N: unpack (a tar file, compressed as tar
# can tell) or copy (a directory) ARTIFACT into ROOT/releases/N, through a
# temporary name so that a half-written release is never seen as N.
zd_install_release() {
	local art=$1 root=$2 n=$3 tmp
	tmp="$root/releases/.incoming-$n.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp" || zd_die 1 "cannot create $tmp" "check that $root/releases is writable"
	if [ -d "$art" ]; then
		cp -a "$art/." "$tmp/" || { rm -rf "$tmp"; zd_die 1 "cannot copy $art into $tmp"; }
	elif [ -f "$art" ]; then
		tar -xf "$art" -C "$tmp" || { rm -rf "$tmp"; zd_die 1 "cannot unpack $art (is it a tar archive?)" "pass a .tar, .tar.gz, .tgz, .tar.xz or .tar.zst file, or a directory"; }
	else
		rm -rf "$tmp"
		zd_die 1 "release artifact $art: no such file or directory"
	fi
	mv -T "$tmp" "$root/releases/$n" || { rm -rf "$tmp"; zd_die 1 "cannot rename $tmp to $root/releases/$n"; }
}

# zd_point_current ROOT TARGET: make ROOT/current point at TARGET (relative to
# ROOT, e.g. releases/7) in one rename, so no reader ever finds it missing.
zd_point_current() {
	local root=$1 target=$2 tmp="$1/.current.$$"
	if ! { ln -sfn "$target" "$tmp" && mv -Tf "$tmp" "$root/current"; }; then
		zd_die 8 "cannot point $root/current at $target" "fix it by hand: ln -sfn $target $root/current.new && mv -T $root/current.new $root/current"
	fi
}

# zd_prune ROOT KEEP CURRENT PREVIOUS: remove releases beyond the newest KEEP,
# never CURRENT or PREVIOUS (numbers).
zd_prune() {
	local root=$1 keep=$2 cur=$3 prev=$4 d n
	[ "$keep" -gt 0 ] || return 0
	local -a nums=()
	for d in "$root"/releases/*/; do
		n=${d%/}
		n=${n##*/}
		[[ $n =~ ^[0-9]+$ ]] && nums+=("$n")
	done
	[ "${#nums[@]}" -gt "$keep" ] || return 0
	mapfile -t nums < <(printf '%s\n' "${nums[@]}" | sort -n)
	local i drop=$((${#nums[@]} - keep))
	for ((i = 0; i < drop; i++)); do
		n=${nums[i]}
		[ "$n" = "$cur" ] || [ "$n" = "$prev" ] && continue
		rm -rf "${root:?}/releases/$n" && zd_log "pruned release $n"
	done
}

# zd_json_field NAME: the first "NAME": value in the JSON on stdin (a string
# without its quotes, or a number/bool/null as is).
zd_json_field() {
	sed -n -e "s/^ *\"$1\": *\"\(.*\)\",\{0,1\}$/\1/p" -e "s/^ *\"$1\": *\([^\",]*\),\{0,1\}$/\1/p" | head -n 1
}
