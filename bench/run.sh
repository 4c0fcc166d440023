#!/usr/bin/env bash
# make bench: compare reload strategies under load and write bench/RESULTS.md.
# Needs `make build tools` first (the Makefile's bench target does that).
# Extra arguments go to zd-bench, e.g. ./bench/run.sh -reloads 5 -only tableflip
# Bounded: each load run stops after -max-run (default 4m); the whole run
# usually takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
for b in zd-bench zd-load echo tableflip-echo; do
	[ -x "bin/$b" ] || { echo "bench/run.sh: bin/$b missing; run make build tools" >&2; exit 1; }
done
exec bin/zd-bench -bin bin -out bench/RESULTS.md -json bench/out/results.json -app-log bench/out/apps.log "$@"
