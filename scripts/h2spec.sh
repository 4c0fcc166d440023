#!/usr/bin/env bash
# Run h2spec (an HTTP/2 conformance suite nobody here wrote) against a
# freshly started zd-queue, over h2c (prior knowledge) and over TLS, both on
# the fast path (zd-queue's own HTTP/2 server). Fails unless every case of
# both runs passes.
#
#   scripts/h2spec.sh            # what `make h2spec` runs
#   H2SPEC_RUNS=5 scripts/h2spec.sh   # repeat each run (timing-dependent cases)
#
# Needs: go, openssl, python3, h2spec on PATH or in $(go env GOPATH)/bin
# (`make h2spec` installs the pinned version when it is missing).
# ZD_QUEUE_BIN and ECHO_BIN name prebuilt binaries (default: build them).
set -euo pipefail
# --help prints the comment above and runs nothing.
case "${1:-}" in
-h | --help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
esac
cd "$(dirname "$0")/.."

RUNS=${H2SPEC_RUNS:-1}
H2SPEC=${H2SPEC:-$(command -v h2spec || echo "$(go env GOPATH)/bin/h2spec")}
[ -x "$H2SPEC" ] || { echo "h2spec.sh: h2spec not found (make h2spec installs it)" >&2; exit 1; }
for t in openssl python3; do
	command -v "$t" >/dev/null || { echo "h2spec.sh: $t not found (apt-get install $t)" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/zd-h2spec.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT

if [ -z "${ZD_QUEUE_BIN:-}" ] || [ -z "${ECHO_BIN:-}" ]; then
	echo "h2spec.sh: building zd-queue and examples/echo" >&2
	go build -o "$TMP/" ./cmd/zd-queue ./examples/echo
fi
ZD_QUEUE_BIN=${ZD_QUEUE_BIN:-$TMP/zd-queue}
ECHO_BIN=${ECHO_BIN:-$TMP/echo}

# Free ports from the kernel, one per server.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# waitport PORT NAME LOG: poll until something accepts on PORT, for at
# most 10 s; then fail with the server's log.
waitport() {
	local deadline=$((SECONDS + 10))
	until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "h2spec.sh: $2 not listening on 127.0.0.1:$1 after 10s; its log:" >&2
			tail -n 20 "$3" >&2
			exit 1
		fi
		sleep 0.05
	done
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	-keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>"$TMP/openssl.log" ||
	{ cat "$TMP/openssl.log" >&2; exit 1; }

PB=$(port)
"$ECHO_BIN" -listen "127.0.0.1:$PB" 2>"$TMP/echo.log" &
PIDS+=($!)
waitport "$PB" echo "$TMP/echo.log"

# start NAME PORT [FLAGS...]: a zd-queue in front of the echo backend.
start() {
	local name=$1 p=$2
	shift 2
	mkdir -m 0700 "$TMP/state-$name"
	"$ZD_QUEUE_BIN" --listen "127.0.0.1:$p" --backend "tcp://127.0.0.1:$PB" \
		--state-dir "$TMP/state-$name" --log-level warn "$@" 2>"$TMP/zd-queue-$name.log" &
	PIDS+=($!)
	waitport "$p" "zd-queue ($name)" "$TMP/zd-queue-$name.log"
}
PC=$(port)
PT=$(port)
start h2c "$PC"
start tls "$PT" --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem"

"$H2SPEC" --version
failed=0
for run in $(seq 1 "$RUNS"); do
	for mode in h2c tls; do
		args=(-h 127.0.0.1 -o 3)
		if [ "$mode" = tls ]; then args+=(-p "$PT" -t -k); else args+=(-p "$PC"); fi
		out="$TMP/h2spec-$mode-$run.txt"
		rc=0
		"$H2SPEC" "${args[@]}" >"$out" 2>&1 || rc=$?
		summary=$(grep -E '^[0-9]+ tests, ' "$out" || echo "no summary")
		echo "h2spec $mode run $run/$RUNS: $summary"
		# Every case must pass: exit status 0 and no case failed or skipped.
		if [ "$rc" -ne 0 ] || ! grep -Eq '^([0-9]+) tests, \1 passed, 0 skipped, 0 failed' <<<"$summary"; then
			failed=$((failed + 1))
			sed -n '/^Failures:/,$p' "$out"
		fi
	done
done
for name in h2c tls; do
	if grep -q 'level=ERROR' "$TMP/zd-queue-$name.log"; then
		echo "h2spec.sh: zd-queue ($name) logged errors:" >&2
		grep 'level=ERROR' "$TMP/zd-queue-$name.log" >&2
		failed=$((failed + 1))
	fi
done
if [ "$failed" -ne 0 ]; then
	echo "h2spec.sh: FAIL ($failed of $((2 * RUNS)) runs not clean)" >&2
	exit 1
fi
echo "h2spec.sh: PASS (h2c and TLS, $RUNS run(s) each)"
