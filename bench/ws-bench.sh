#!/usr/bin/env bash
# ws-bench.sh: issue #11's WebSocket relay benchmarks in one sitting, written
# to bench/WS-RESULTS.md with the load average before and after each part.
#
#   bench/ws-bench.sh [ROUNDS] [MESSAGES]
#
#   - BenchmarkMoveIdleSessions: time to move n idle sessions off a draining
#     backend onto another (one op = one Drain of all n, until all are on the
#     other backend) and the p50/p99 of the per-session pause (held, dial
#     queueing included). n = 1,000 and as many as the descriptor limit lets
#     one process hold (each session is two sockets in the relay's process).
#   - BenchmarkIdleSessionMemory: heap + stacks per idle relayed session.
#   - BenchmarkRelay100B: 100-byte messages echoed over one connection (256 in
#     flight), direct to the backend, through the relay, through HAProxy's
#     WebSocket tunnel, taking turns ROUNDS times (default 3); MESSAGES
#     messages each (default 200000). The report gives each round's ratio.
#
# The benchmarks are pkg/wsrelay's (bench_test.go): the backends and clients
# are child processes, so what is measured in the benchmark's process is the
# relay alone. Needs haproxy (Debian package) for the third target.
# The machine may be shared: read ratios from one run, not absolute numbers.
# PROFILE=1 also writes CPU profiles of the relay run to bench/out/
# (go tool pprof -top bench/out/ws-relay.cpu.prof).
set -euo pipefail

ROUNDS=${1:-3}
MESSAGES=${2:-200000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/bench/WS-RESULTS.md"
mkdir -p "$ROOT/bench/out"
cd "$ROOT"

load() { cut -d' ' -f1-3 /proc/loadavg; }
PROF=()
if [ -n "${PROFILE:-}" ]; then
	PROF=(-cpuprofile "$ROOT/bench/out/ws-relay.cpu.prof")
fi

echo "building the benchmark binary" >&2
go test -c -o "$ROOT/bench/out/wsrelay.test" ./pkg/wsrelay/
BIN="$ROOT/bench/out/wsrelay.test"
cd pkg/wsrelay

l0=$(load)
echo "moves and memory (load $l0)" >&2
moves=$("$BIN" -test.run XXX -test.bench 'BenchmarkMoveIdleSessions|BenchmarkIdleSessionMemory' -test.benchtime 3x -test.timeout 30m 2>&1 | tee /dev/stderr | grep -E '^(Benchmark|.*descriptor limit)' || true)
l1=$(load)
echo "relay throughput (load $l1)" >&2
thr=$("$BIN" -test.run XXX -test.bench 'BenchmarkRelay100B' -test.benchtime "${MESSAGES}x" -test.count "$ROUNDS" "${PROF[@]}" -test.timeout 30m 2>&1 | tee /dev/stderr | grep -E '^Benchmark' || true)
l2=$(load)

# ratios per round: the n-th direct, relay and haproxy lines belong together
ratios=$(awk '
	/Relay100B\/direct/  { d[++nd] = $3 }
	/Relay100B\/relay/   { r[++nr] = $3 }
	/Relay100B\/haproxy/ { h[++nh] = $3 }
	END {
		for (i = 1; i <= nr; i++) {
			line = sprintf("| %d | %.0f | %.0f | %s |", i, d[i], r[i], (i in h) ? sprintf("%.0f", h[i]) : "—")
			line = line sprintf(" %.2fx |", d[i] / r[i])
			line = line ((i in h) ? sprintf(" %.2fx |", h[i] / r[i]) : " — |")
			print line
		}
	}' <<<"$thr")

{
	echo "# WebSocket relay benchmarks"
	echo
	echo "Written by \`bench/ws-bench.sh $ROUNDS $MESSAGES\` on $(date -u '+%Y-%m-%d %H:%M UTC'),"
	echo "commit $(git -C "$ROOT" rev-parse --short HEAD), $(nproc) CPUs, $(go version | cut -d' ' -f3)."
	echo "Load average (1, 5, 15 min): $l0 before the moves, $l1 before the"
	echo "throughput rounds, $l2 after. Other work shared the machine: read the"
	echo "ratios of one round, not the absolute numbers."
	echo
	echo "## Moving idle sessions, memory per session"
	echo
	echo "Targets (issue #11): all sessions moved in under 1 s; per-session pause"
	echo "p99 under 100 ms beyond the new backend's dial; under 16 KiB per idle"
	echo "session, both sockets."
	echo
	echo '```'
	echo "$moves"
	echo '```'
	echo
	echo "## Throughput of 100-byte messages (ns per message and echo; lower is faster)"
	echo
	echo "Target: the relay at least 0.8x HAProxy's WebSocket tunnel."
	echo
	echo "| round | direct | relay | haproxy | relay vs direct | relay vs haproxy |"
	echo "|---|---|---|---|---|---|"
	echo "$ratios"
	echo
	echo '```'
	echo "$thr"
	echo '```'
} >"$OUT"
echo "wrote $OUT" >&2
