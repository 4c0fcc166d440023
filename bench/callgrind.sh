#!/usr/bin/env bash
# callgrind.sh: CPU instructions zd-queue spends per request, counted by
# valgrind's callgrind, for HTTP/1.1 and h2c, this checkout against another
# build. Instructions, unlike seconds, do not depend on what else the
# machine runs: the same binary and load give the same count within about
# 1%, so a change's cost shows on a busy machine too. (Kernel time is not
# counted: a change that adds syscalls needs proxy-compare.sh as well.)
#
#   ZDQ_BEFORE=PATH bench/callgrind.sh [REQUESTS] [ROUNDS]
#
# REQUESTS (default 5000) per protocol and round, ROUNDS (default 2).
# Each run starts examples/echo and zd-queue under callgrind
# (GODEBUG=asyncpreemptoff=1: callgrind aborts on Go's preemption signals),
# zeroes the counters once zd-queue listens, sends REQUESTS with h2load
# (10 connections, 10 streams or pipelined requests each), dumps the
# counters and kills zd-queue. The per-request figure includes what the
# runtime spent meanwhile (GC, stack growth, scheduling).
#
# Writes the table to stdout; KEEP=1 keeps the callgrind files for
# callgrind_annotate. Needs valgrind, h2load (nghttp2-client), python3.
set -euo pipefail

N=${1:-5000}
ROUNDS=${2:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/zdcg.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "${KEEP:-}" ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

for t in valgrind callgrind_control h2load python3 go; do
	command -v "$t" >/dev/null || { echo "callgrind.sh: $t not found (apt-get install valgrind nghttp2-client python3)" >&2; exit 1; }
done

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
waitport() {
	for _ in $(seq 1 600); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "callgrind.sh: nothing listens on port $1 after 60 s" >&2
	exit 1
}

echo "building echo and zd-queue..." >&2
(cd "$ROOT" && go build -o "$TMP/echo" ./examples/echo && go build -o "$TMP/zd-queue" ./cmd/zd-queue)
TARGETS=("zd-queue=$TMP/zd-queue")
[ -n "${ZDQ_BEFORE:-}" ] && TARGETS+=("zd-queue-before=$ZDQ_BEFORE")

PB=$(port)
"$TMP/echo" -listen "127.0.0.1:$PB" 2>"$TMP/echo.log" &
PIDS+=($!)
waitport "$PB"

# measure NAME BIN PROTO ROUND: prints "NAME PROTO instructions-per-request".
measure() {
	local name=$1 bin=$2 proto=$3 round=$4 p state out pid f=
	local opt=()
	[ "$proto" = h1 ] && opt=(--h1)
	p=$(port)
	state="$TMP/state-$name-$proto-$round"
	mkdir -m 0700 "$state"
	out="$TMP/cg-$name-$proto-$round.out"
	GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file="$out" \
		"$bin" --listen "127.0.0.1:$p" --backend "tcp://127.0.0.1:$PB" --admin "127.0.0.1:$(port)" \
		--state-dir "$state" --log-level warn >"$TMP/vg-$name-$proto-$round.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	waitport "$p"
	# A few requests first, so that the pools and first-use paths are warm.
	h2load -n 200 -c 10 -m 10 "${opt[@]}" "http://127.0.0.1:$p/" >/dev/null 2>&1 || true
	callgrind_control -z "$pid" >/dev/null 2>&1
	if ! h2load -n "$N" -c 10 -m 10 "${opt[@]}" "http://127.0.0.1:$p/" >"$TMP/h2load-$name-$proto-$round.txt" 2>&1 ||
		! grep -q "requests: $N total, $N started, $N done, $N succeeded" "$TMP/h2load-$name-$proto-$round.txt"; then
		echo "callgrind.sh: $name $proto: not every request succeeded:" >&2
		grep "requests:" "$TMP/h2load-$name-$proto-$round.txt" >&2 || cat "$TMP/h2load-$name-$proto-$round.txt" >&2
		exit 1
	fi
	callgrind_control -d "$pid" >/dev/null 2>&1
	# The dump is written by the time callgrind_control returns; give the
	# file a moment to be complete (its totals line is last).
	for _ in $(seq 1 100); do
		for f in "$out".* "$out"; do [ -s "$f" ] && break; done
		[ -f "$f" ] && grep -qE '^(summary|totals):' "$f" && break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	ir=$(grep -E '^(summary|totals):' "$f" | head -n 1 | awk '{print $2}')
	echo "$name $proto $((ir / N))"
}

results="$TMP/results"
for round in $(seq 1 "$ROUNDS"); do
	for proto in h1 h2c; do
		for t in "${TARGETS[@]}"; do
			measure "${t%%=*}" "${t#*=}" "$proto" "$round" | tee -a "$results" >&2
		done
	done
done

python3 - "$results" "$N" "$ROUNDS" <<'PY'
import sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, proto, v = line.split()
    rows[(name, proto)].append(int(v))
print(f"Instructions per request under callgrind ({sys.argv[2]} requests, {sys.argv[3]} rounds; median, then each round)\n")
print("| target | protocol | instructions/request | rounds |")
print("|---|---|---:|---|")
for (name, proto), vs in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    s = sorted(vs)
    print(f"| {name} | {proto} | {s[len(s)//2]:,} | {', '.join(f'{v:,}' for v in vs)} |")
base = {p: sorted(v)[len(v)//2] for (n, p), v in rows.items() if n == "zd-queue-before"}
for (name, proto), vs in sorted(rows.items()):
    if name == "zd-queue" and proto in base:
        s = sorted(vs)
        print(f"\n{proto}: zd-queue / zd-queue-before = {s[len(s)//2] / base[proto]:.3f}", end="")
print()
PY
