#!/usr/bin/env bash
# proxy-compare.sh: throughput of zd-queue side by side with HAProxy and nginx
# as plain reverse proxies, and the backend alone, in one run: same backend
# (examples/echo), same load tools (wrk for keep-alive HTTP/1.1, h2load for
# cleartext HTTP/2). Writes bench/PROXY-RESULTS.md.
#
#   bench/proxy-compare.sh [DURATION_SECONDS] [CONNECTIONS] [ROUNDS]
#
# Every target is measured ROUNDS times (default 3), the targets taking
# turns within each round, so that what else runs on the machine falls on
# all of them alike; the report gives per-target medians and the median and
# range of each round's ratio to HAProxy.
#
# ZDQ_BEFORE=PATH adds a second zd-queue binary (e.g. an older commit's
# build) as the target zd-queue-before, measured in the same rounds as
# zd-queue, so that a change is compared before and after in one sitting:
#
#   git worktree add /tmp/before OLDREV && (cd /tmp/before && go build -o /tmp/zdq-before ./cmd/zd-queue)
#   ZDQ_BEFORE=/tmp/zdq-before bench/proxy-compare.sh
#
# Needs wrk, h2load (nghttp2-client), haproxy and nginx (Debian packages).
# The machine is shared: run it when nothing else is busy, and read ratios,
# not absolute numbers.
set -euo pipefail

DUR=${1:-10}
CONNS=${2:-50}
ROUNDS=${3:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/bench/PROXY-RESULTS.md"
TMP=$(mktemp -d /tmp/zdpc.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; echo "kept $TMP" >&2' EXIT

for t in wrk h2load haproxy nginx go; do
	command -v "$t" >/dev/null || { echo "proxy-compare: $t not found (apt-get install wrk nghttp2-client haproxy nginx)" >&2; exit 1; }
done

# Free ports from the kernel, one per server.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
PB=$(port); PZ=$(port); PH=$(port); PN=$(port); PA=$(port)

echo "building echo and zd-queue..." >&2
(cd "$ROOT" && go build -o "$TMP/echo" ./examples/echo && go build -o "$TMP/zd-queue" ./cmd/zd-queue)

waitport() {
	for _ in $(seq 1 200); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	echo "proxy-compare: nothing listens on port $1; logs:" >&2; for f in "$TMP"/*.log; do echo "== $f"; tail -n 5 "$f"; done >&2
	exit 1
}

"$TMP/echo" -listen "127.0.0.1:$PB" 2>"$TMP/echo.log" &
PIDS+=($!)
PID_ECHO=$!
waitport "$PB"

mkdir -m 0700 "$TMP/state"
"$TMP/zd-queue" --listen "127.0.0.1:$PZ" --backend "tcp://127.0.0.1:$PB" --admin "127.0.0.1:$PA" \
	--state-dir "$TMP/state" --log-level warn 2>"$TMP/zdq.log" &
PIDS+=($!)
PID_ZDQ=$!
waitport "$PZ"

# The other zd-queue build to compare with (ZDQ_BEFORE), same flags.
PZB=
if [ -n "${ZDQ_BEFORE:-}" ]; then
	PZB=$(port)
	mkdir -m 0700 "$TMP/state-before"
	"$ZDQ_BEFORE" --listen "127.0.0.1:$PZB" --backend "tcp://127.0.0.1:$PB" --admin "127.0.0.1:$(port)" \
		--state-dir "$TMP/state-before" --log-level warn 2>"$TMP/zdq-before.log" &
	PIDS+=($!)
	PID_ZDQB=$!
	waitport "$PZB"
fi

# The same zd-queue with its fast path off (net/http's server for HTTP/1.1
# and h2c), to show what the fast path is worth.
PZS=$(port)
mkdir -m 0700 "$TMP/state-std"
"$TMP/zd-queue" --listen "127.0.0.1:$PZS" --backend "tcp://127.0.0.1:$PB" --admin "127.0.0.1:$(port)" \
	--state-dir "$TMP/state-std" --log-level warn --fast-path=false 2>"$TMP/zdq-std.log" &
PIDS+=($!)
PID_ZDQS=$!
waitport "$PZS"

# One bind speaking both h1 and h2c prior knowledge is not possible in
# HAProxy 2.6 without ALPN; use two ports: PH for h1, PH2 for h2c.
PH2=$(port)
cat >"$TMP/haproxy.cfg" <<CFG
global
	maxconn 4000
	nbthread 2
defaults
	mode http
	timeout connect 5s
	timeout client 60s
	timeout server 60s
	http-reuse always
	option forwardfor
frontend fe
	bind 127.0.0.1:$PH
	bind 127.0.0.1:$PH2 proto h2
	default_backend be
backend be
	server s1 127.0.0.1:$PB
CFG
haproxy -f "$TMP/haproxy.cfg" -db 2>"$TMP/haproxy.log" &
PIDS+=($!)
PID_HAP=$!
waitport "$PH"

PN2=$(port)
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<CFG
worker_processes 2;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
daemon off;
events { worker_connections 4000; }
http {
	access_log off;
	client_body_temp_path $TMP/nginx;
	proxy_temp_path $TMP/nginx;
	fastcgi_temp_path $TMP/nginx;
	uwsgi_temp_path $TMP/nginx;
	scgi_temp_path $TMP/nginx;
	upstream be { server 127.0.0.1:$PB; keepalive 256; }
	server {
		listen 127.0.0.1:$PN;
		listen 127.0.0.1:$PN2 http2;
		location / {
			proxy_pass http://be;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
		}
	}
}
CFG
nginx -c "$TMP/nginx.conf" -e "$TMP/nginx/error.log" 2>"$TMP/nginx.log" &
PIDS+=($!)
PID_NGX=$!
waitport "$PN"

# cputicks PID: utime+stime of PID and its children processes (nginx workers), in clock ticks.
cputicks() {
	local t=0 p
	for p in $1 $(pgrep -P "$1" || true); do
		t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
TCK=$(getconf CLK_TCK)
pidof_target() { case $1 in direct) echo "$PID_ECHO" ;; zd-queue) echo "$PID_ZDQ" ;; zd-queue-before) echo "$PID_ZDQB" ;; zd-queue-std) echo "$PID_ZDQS" ;; haproxy) echo "$PID_HAP" ;; nginx) echo "$PID_NGX" ;; esac; }

# run_wrk NAME PORT: prints "rps p99_ms errors"
run_wrk() {
	local out
	out=$(wrk -t2 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$2/" 2>&1)
	echo "$out" >"$TMP/wrk-$1.txt"
	local rps p99 errs non2xx
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	p99=$(awk '$1=="99%" {print $2}' <<<"$out")
	errs=$(awk '/Socket errors:/ {gsub(",",""); print $4+$6+$8+$10}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
	echo "$rps $(to_ms "$p99") $(( ${errs:-0} + ${non2xx:-0} ))"
}

# to_ms converts wrk's 1.23ms / 456.00us / 1.2s to milliseconds.
to_ms() {
	python3 -c 'import sys,re
v=sys.argv[1]; m=re.match(r"([0-9.]+)(us|ms|s)",v)
if not m: print("n/a"); sys.exit()
n=float(m.group(1)); u=m.group(2)
print("%.2f"%(n/1000 if u=="us" else n if u=="ms" else n*1000))' "$1"
}

# run_h2 NAME PORT: h2load, cleartext prior knowledge; prints "rps p99_ms errors"
run_h2() {
	local out
	out=$(h2load -D "$DUR" -c "$CONNS" -m 10 -t 2 --log-file="$TMP/h2-$1.log" "http://127.0.0.1:$2/" 2>&1) || true
	echo "$out" >"$TMP/h2-$1.txt"
	local rps errs p99
	rps=$(awk '/^finished in/ {gsub(",",""); print $4}' <<<"$out")
	errs=$(awk '/^requests:/ {print $10+$12+$14}' <<<"$out")
	# h2load prints no percentiles; its per-request log has each
	# request's time to the end of its response (third column, µs).
	p99=$(python3 -c 'import sys
v=sorted(int(l.split("\t")[2]) for l in open(sys.argv[1]) if l.count("\t")>=2)
print("%.2f"%(v[min(len(v)-1,int(len(v)*0.99))]/1000) if v else "n/a")' "$TMP/h2-$1.log" 2>/dev/null || echo n/a)
	rm -f "$TMP/h2-$1.log"
	echo "${rps:-0} ${p99:-n/a} ${errs:-0}"
}

RES="$TMP/results"
: >"$RES"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "warming up..." >&2
for p in $PB $PZ $PZB $PZS $PH $PN; do wrk -t1 -c10 -d1s "http://127.0.0.1:$p/" >/dev/null 2>&1; done
# measure PROTO NAME PORT ROUND: one load run against NAME, its result and
# the CPU ticks NAME's process used appended to $RES.
measure() {
	local c0 c1 r
	echo "round $4/$ROUNDS, $1: $2" >&2
	c0=$(cputicks "$(pidof_target "$2")")
	case $1 in h1) r=$(run_wrk "$2-$4" "$3") ;; h2) r=$(run_h2 "$2-$4" "$3") ;; esac
	c1=$(cputicks "$(pidof_target "$2")")
	echo "$1 $2 $4 $r $((c1 - c0))" >>"$RES"
}
for round in $(seq 1 "$ROUNDS"); do
	measure h1 direct "$PB" "$round"
	measure h1 zd-queue "$PZ" "$round"
	[ -z "$PZB" ] || measure h1 zd-queue-before "$PZB" "$round"
	measure h1 zd-queue-std "$PZS" "$round"
	measure h1 haproxy "$PH" "$round"
	measure h1 nginx "$PN" "$round"
	measure h2 zd-queue "$PZ" "$round"
	[ -z "$PZB" ] || measure h2 zd-queue-before "$PZB" "$round"
	measure h2 zd-queue-std "$PZS" "$round"
	measure h2 haproxy "$PH2" "$round"
	measure h2 nginx "$PN2" "$round"
done

# table PROTO NAMES...: the markdown table of one protocol from $RES.
table() {
	python3 - "$RES" "$TCK" "$DUR" "$@" <<'PY'
import sys, statistics as st
res, tck, dur, proto, names = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5:]
rows = {}
for line in open(res):
    f = line.split()
    if f[0] != proto:
        continue
    name, rnd, rps, p99, errs, ticks = f[1], int(f[2]), f[3], f[4], int(f[5]), float(f[6])
    num = lambda v: float(v) if v not in ("n/a", "") else None
    rows.setdefault(name, {})[rnd] = (num(rps), num(p99), errs, ticks)
def med(xs):
    xs = [x for x in xs if x is not None]
    return st.median(xs) if xs else None
def fmt(v, nd=2):
    return "n/a" if v is None else f"{v:.{nd}f}"
hap = rows.get("haproxy", {})
print("| target | req/s (median) | p99 ms (median) | errors (all rounds) | rps vs HAProxy: median (range) | p99 vs HAProxy (median) | CPU µs/req (median) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name in names:
    rs = rows.get(name, {})
    if not rs:
        continue
    ratios, p99r, cpu = [], [], []
    for rnd, (rps, p99, errs, ticks) in rs.items():
        h = hap.get(rnd)
        if h and rps and h[0]:
            ratios.append(rps / h[0])
        if h and p99 and h[1]:
            p99r.append(p99 / h[1])
        if rps:
            cpu.append(ticks / tck * 1e6 / (rps * dur))
    rng = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
    print(f"| {name} | {fmt(med(r[0] for r in rs.values()))} | {fmt(med(r[1] for r in rs.values()))} | "
          f"{sum(r[2] for r in rs.values())} | {fmt(med(ratios))}{rng} | {fmt(med(p99r))} | {fmt(med(cpu), 1)} |")
PY
}

{
	echo "# zd-queue vs HAProxy vs nginx (generated by bench/proxy-compare.sh)"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores shared with other work, ${DUR}s per run, $CONNS connections, $ROUNDS rounds"
	echo "load average $LOAD0 at the start and $(cut -d' ' -f1-3 /proc/loadavg) at the end (others' work: compare ratios within one run)."
	echo "Backend: examples/echo (Go net/http) on 127.0.0.1. zd-queue $(cd "$ROOT" && git rev-parse --short HEAD),"
	echo "$(haproxy -v | head -1 | cut -d' ' -f1-3), $(nginx -v 2>&1 | cut -d' ' -f3). Proxies: HAProxy nbthread 2 with http-reuse always,"
	echo "nginx 2 workers with upstream keepalive 256, zd-queue defaults. All add X-Forwarded-For."
	echo
	echo "## HTTP/1.1 keep-alive (wrk -t2 -c$CONNS)"
	echo
	table h1 direct zd-queue zd-queue-before zd-queue-std haproxy nginx
	echo
	echo "## HTTP/2 cleartext, prior knowledge (h2load -c$CONNS -m10; backend side HTTP/1.1)"
	echo
	table h2 zd-queue zd-queue-before zd-queue-std haproxy nginx
	echo
	echo "CPU µs/req is the CPU time (user+system) the proxy process itself used during the run divided by"
	echo "the requests it served (for direct: the backend's). On a shared machine it is steadier than req/s:"
	echo "req/s follows whatever else runs, CPU per request much less."
	echo
	if [ -n "$PZB" ]; then
		echo "zd-queue-before is the zd-queue binary ZDQ_BEFORE named ($ZDQ_BEFORE), with the same flags as zd-queue"
		echo "and measured in the same rounds."
		echo
	fi
	echo "zd-queue-std is the same zd-queue binary with --fast-path=false (net/http's server for HTTP/1.1"
	echo "and h2c). The h2 p99 comes from h2load's per-request log (time to the end of each response)."
	echo "The direct backend does not speak h2c, so it has no h2 row. nginx 1.22's h2c drops requests under"
	echo "this load here (h2load counts them as failures; see the raw output): its h2 row does not compare."
	echo "Raw tool output is printed below."
	echo
	echo '<details><summary>raw output</summary>'
	echo
	echo '```'
	for f in "$TMP"/wrk-*.txt "$TMP"/h2-*.txt; do
		echo "== $(basename "$f")"
		grep -vE '^(progress:|spawning thread|Warm-up|Main benchmark|starting benchmark)' "$f" || true
	done
	echo '```'
	echo '</details>'
} >"$OUT"
echo "wrote $OUT" >&2
sed -n '1,30p' "$OUT"
