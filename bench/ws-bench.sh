#!/usr/bin/env bash
# ws-bench.sh: issue #11's WebSocket relay benchmarks in one sitting, written
# to bench/WS-RESULTS.md with the load average before and after each part.
#
#   bench/ws-bench.sh [ROUNDS] [MESSAGES]
#
#   - BenchmarkMoveIdleSessions: time to move n idle sessions off a draining
#     backend onto another (one op = one Drain of all n, until all are on the
#     other backend; 3 drains a run, ROUNDS runs), the per-session pause
#     (p50/p99/max of how long each session's client messages were held)
#     and the new backend's dial inside it, the CPU time of the relay's
#     process and of the backends' process per moved session, and the
#     relay's read/write syscalls and allocations per move. Two backends:
#     coder/websocket under net/http's server, and a lean echo (an accept
#     loop, http.ReadRequest, pkg/wsrelay's frame code). n = 1,000 and
#     10,000, or as many as the descriptor limit lets one process hold (two
#     sockets a session; the benchmark raises its soft limit to the hard one).
#   - BenchmarkMoveIdleSessionsH2 (pkg/proxy): zd-queue itself moving 10,000
#     sessions whose clients are RFC 8441 streams, 100 to an HTTP/2
#     connection, so the proxy holds 10,000 backend sockets and 100 client
#     ones: a real 10,000 under a 20,000-descriptor hard limit (ROUNDS runs
#     of 3 drains; coder/websocket echo backends).
#   - BenchmarkIdleSessionMemory: heap + goroutine stacks per idle relayed
#     session, n = the same (ROUNDS runs).
#   - BenchmarkRelay100B: 100-byte messages echoed over one connection (a
#     gorilla client in a child process, 256 in flight), direct to the
#     backend, through the relay, through HAProxy's WebSocket tunnel, ROUNDS
#     rounds, the order of the three turned each round; MESSAGES messages
#     each (default 200000). Each round's ratio, then medians and ranges.
#
# The backends and clients are child processes, so what is measured in the
# benchmark's process is the relay alone. Needs haproxy (Debian package).
# The machine may be shared: read ratios within a round, not absolute numbers.
# PROFILE=1 also writes CPU profiles of the relay's throughput runs to
# bench/out/ (go tool pprof -top bench/out/ws-relay.cpu.1.prof).
set -euo pipefail

case "${1:-}" in -h | --help)
	sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
esac
ROUNDS=${1:-5}
MESSAGES=${2:-200000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/bench/WS-RESULTS.md"
mkdir -p "$ROOT/bench/out"
cd "$ROOT"

load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "building the benchmark binaries" >&2
BIN="$ROOT/bench/out/wsrelay.test"
PBIN="$ROOT/bench/out/proxy.test"
go test -c -o "$BIN" ./pkg/wsrelay/
go test -c -o "$PBIN" ./pkg/proxy/
cd pkg/wsrelay
run() { "$BIN" -test.run '^$' -test.timeout 30m "$@" 2>&1 | tee /dev/stderr | grep -E '^Benchmark|descriptor limit' || true; }

l0=$(load)
echo "moves (load $l0)" >&2
moves=$(run -test.bench BenchmarkMoveIdleSessions -test.benchtime 3x -test.count "$ROUNDS")
lh=$(load)
echo "moves of 10,000 over HTTP/2 (load $lh)" >&2
h2moves=$(cd ../proxy && "$PBIN" -test.run '^$' -test.timeout 30m -test.bench BenchmarkMoveIdleSessionsH2 -test.benchtime 3x -test.count "$ROUNDS" 2>&1 |
	tee /dev/stderr | grep -E '^Benchmark' || true)
l1=$(load)
echo "memory (load $l1)" >&2
mem=$(run -test.bench BenchmarkIdleSessionMemory -test.benchtime 1x -test.count "$ROUNDS")
l2=$(load)
thr=""
orders=(direct,relay,haproxy relay,haproxy,direct haproxy,direct,relay)
for i in $(seq 1 "$ROUNDS"); do
	o=${orders[$(((i - 1) % 3))]}
	PROF=()
	if [ -n "${PROFILE:-}" ]; then
		PROF=(-test.cpuprofile "$ROOT/bench/out/ws-relay.cpu.$i.prof")
	fi
	echo "throughput round $i ($o, load $(load))" >&2
	r=$(ZD_WSRELAY_ORDER=$o run -test.bench BenchmarkRelay100B -test.benchtime "${MESSAGES}x" "${PROF[@]}" | sed "s/^/round$i /")
	thr+="$r"$'\n'
done
l3=$(load)

# metric NAME FIELD: the values of one metric of the benchmark lines whose
# name starts with NAME, one a line.
metric() {
	awk -v name="$1" -v unit="$2" '$1 ~ "^"name { for (i = 3; i < NF; i += 2) if ($(i+1) == unit) print $i }'
}
# stats: median [min – max] of the numbers on stdin.
stats() {
	sort -g | awk -v f="${1:-%.1f}" '{ v[NR] = $1 } END {
		if (NR == 0) { print "—"; exit }
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf(f " [" f " – " f "]\n", m, v[1], v[NR]) }'
}
moverow() { # kind n
	local l
	l=$(grep -E "^BenchmarkMoveIdleSessions/$1/n=$2-" <<<"$moves" || true)
	[ -n "$l" ] || return 0
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" \
		"$(metric Bench ns/op <<<"$l" | awk '{ print $1 / 1e6 }' | stats %.0f)" \
		"$(metric Bench pause-p50-ms <<<"$l" | stats)" \
		"$(metric Bench pause-p99-ms <<<"$l" | stats)" \
		"$(metric Bench pause-max-ms <<<"$l" | stats %.0f)" \
		"$(metric Bench dial-p99-ms <<<"$l" | stats)" \
		"$(metric Bench relay-cpu-us/session <<<"$l" | stats %.0f)" \
		"$(metric Bench relay-allocs/session <<<"$l" | stats %.1f)" \
		"$(metric Bench relay-syscalls/session <<<"$l" | stats %.2f)" \
		"$(metric Bench backend-cpu-us/session <<<"$l" | stats %.0f)"
}
h2row() {
	local l
	l=$(grep -E "^BenchmarkMoveIdleSessionsH2/" <<<"$h2moves" || true)
	[ -n "$l" ] || return 0
	printf '| %s | %s | %s | %s | %s | %s |\n' \
		"$(metric Bench sessions/op <<<"$l" | stats %.0f)" \
		"$(metric Bench ns/op <<<"$l" | awk '{ print $1 / 1e6 }' | stats %.0f)" \
		"$(metric Bench pause-p50-ms-le <<<"$l" | stats %.0f)" \
		"$(metric Bench pause-p99-ms-le <<<"$l" | stats %.0f)" \
		"$(metric Bench proxy-cpu-us/session <<<"$l" | stats %.0f)" \
		"$(metric Bench backend-cpu-us/session <<<"$l" | stats %.0f)"
}
memrow() { # n
	local l
	l=$(grep -E "^BenchmarkIdleSessionMemory/n=$1-" <<<"$mem" || true)
	[ -n "$l" ] || return 0
	printf '| %s | %s | %s | %s | %s |\n' "$1" \
		"$(metric Bench bytes/session <<<"$l" | stats %.0f)" \
		"$(metric Bench heap-bytes/session <<<"$l" | stats %.0f)" \
		"$(metric Bench stack-bytes/session <<<"$l" | stats %.0f)" \
		"$(metric Bench goroutines/session <<<"$l" | stats %.1f)"
}
ns() { metric Bench ns/op <<<"$(grep -E "^round$1 BenchmarkRelay100B/$2-" <<<"$thr" | cut -d' ' -f2-)"; }
cpu() { metric Bench proxy-cpu-us/msg <<<"$(grep -E "^round$1 BenchmarkRelay100B/$2-" <<<"$thr" | cut -d' ' -f2-)"; }
rounds=""
for i in $(seq 1 "$ROUNDS"); do
	d=$(ns "$i" direct) r=$(ns "$i" relay) h=$(ns "$i" haproxy)
	[ -n "$r" ] || continue
	rounds+=$(awk -v i="$i" -v d="$d" -v r="$r" -v h="${h:-0}" -v rc="$(cpu "$i" relay)" -v hc="$(cpu "$i" haproxy)" \
		-v o="${orders[$(((i - 1) % 3))]}" 'BEGIN {
		printf("| %d | %s | %.0f | %.0f | %s | %.2fx | %s | %.2f | %s |\n", i, o, d, r, h ? sprintf("%.0f", h) : "—",
			d / r, h ? sprintf("%.2fx", h / r) : "—", rc, hc != "" ? sprintf("%.2f", hc) : "—") }')$'\n'
done
col() { awk -F'|' -v c="$1" 'NF > 2 { gsub(/[ x]/, "", $c); print $c }' <<<"$rounds"; }

n=$(grep -oE '^BenchmarkMoveIdleSessions/[a-z]+/n=[0-9]+' <<<"$moves" | cut -d= -f2 | sort -un)
{
	echo "# WebSocket relay benchmarks"
	echo
	echo "Written by \`bench/ws-bench.sh $ROUNDS $MESSAGES\` on $(date -u '+%Y-%m-%d %H:%M UTC'),"
	echo "commit $(git -C "$ROOT" rev-parse --short HEAD), $(nproc) CPUs, $(go version | cut -d' ' -f3)."
	echo "Load average (1, 5, 15 min): $l0 before the moves, $lh before the HTTP/2 moves, $l1 before the memory runs,"
	echo "$l2 before the throughput rounds, $l3 after. Other work shared the machine:"
	echo "medians [min – max] over $ROUNDS runs; read throughput as ratios within a round."
	echo
	echo "## Moving idle sessions off a draining backend"
	echo
	echo "Targets (issue #11): 10,000 sessions moved in under 1 s; per-session pause"
	echo "p99 under 100 ms beyond the new backend's dial. pause: how long a session's"
	echo "client→backend messages were held, from its barrier (Close 1012 to the old"
	echo "backend) to the flush onto the new one: the longest a client message can wait."
	echo "dial: the new backend's part (connect to its 101). CPU: per moved session,"
	echo "of the relay's process and of the echo backends' process; allocs and"
	echo "syscalls (read and write only): the relay's per move, which do not depend"
	echo "on the load. backend coder: coder/websocket under net/http's server; lean:"
	echo "an accept loop, http.ReadRequest and pkg/wsrelay's frame code."
	echo
	echo "| backend | sessions | move all (ms) | pause p50 (ms) | pause p99 (ms) | pause max (ms) | dial p99 (ms) | relay CPU (µs) | relay allocs | relay syscalls | backend CPU (µs) |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|"
	for k in coder lean; do for x in $n; do moverow "$k" "$x"; done; done
	echo
	echo "### 10,000 sessions through zd-queue over HTTP/2 (BenchmarkMoveIdleSessionsH2)"
	echo
	echo "The clients are RFC 8441 streams, 100 to an HTTP/2 connection (TLS), so"
	echo "zd-queue holds 10,000 backend sockets and 100 client ones (HTTP/1.1 clients"
	echo "would need 20,000 + descriptors, over this machine's hard limit). CPU: of"
	echo "zd-queue's process (its HTTP/2 server and the relay) and of the two"
	echo "coder/websocket echo children, per moved session. The pauses are read from"
	echo "zd-queue's histogram: the upper bound of the bucket p50 and p99 fall in."
	echo
	echo "| sessions | move all (ms) | pause p50 ≤ (ms) | pause p99 ≤ (ms) | zd-queue CPU (µs) | backend CPU (µs) |"
	echo "|---|---|---|---|---|---|"
	h2row
	echo
	echo "## Memory per idle relayed session (both sockets)"
	echo
	echo "Target: under 16 KiB (Centrifugo: about 30 KB). Heap in use and goroutine"
	echo "stacks of the relay's process after a GC, with n sessions open, minus before."
	echo
	echo "| sessions | bytes/session | heap | stacks | goroutines/session |"
	echo "|---|---|---|---|---|"
	for x in $n; do memrow "$x"; done
	echo
	echo "## Throughput of 100-byte messages (ns per message and its echo; lower is faster)"
	echo
	echo "Target: the relay at least 0.8x HAProxy's WebSocket tunnel (HAProxy's ns over"
	echo "the relay's). CPU: of the proxy's process per message (µs)."
	echo
	echo "| round | order | direct | relay | haproxy | relay vs direct | relay vs haproxy | relay CPU | haproxy CPU |"
	echo "|---|---|---|---|---|---|---|---|---|"
	printf '%s' "$rounds"
	echo "| median [range] | | $(col 4 | stats %.0f) | $(col 5 | stats %.0f) | $(col 6 | stats %.0f) | $(col 7 | stats %.2f) | $(col 8 | stats %.2f) | $(col 9 | stats %.2f) | $(col 10 | stats %.2f) |"
	echo
	echo "## Raw output"
	echo
	echo '```'
	printf '%s\n%s\n%s\n%s' "$moves" "$h2moves" "$mem" "$thr"
	echo '```'
} >"$OUT"
echo "wrote $OUT" >&2
