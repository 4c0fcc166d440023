#!/usr/bin/env bash
# Run every Fuzz target in the main module briefly (FUZZTIME, default 10s),
# one at a time (go test -fuzz takes one target per run). Exits non-zero if
# any target finds a failure; the failing input is left in testdata/fuzz.
# FUZZMINIMIZETIME (default 200x: 200 runs) bounds the minimizing of each new
# interesting input; go's default of 60 s per input made targets with large
# inputs (the snapshot reader's sealed chunks) spend their whole FUZZTIME
# minimizing.
set -euo pipefail
# --help prints the comment above and runs nothing.
case "${1:-}" in
-h | --help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
esac
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-200x}
failed=0 ran=0
# Fuzz targets live in *_test.go as `func FuzzX(f *testing.F)`. Only the main
# module: nested modules (bench/tableflip-echo) have their own go.mod.
while IFS=: read -r file name; do
	dir=$(dirname "$file")
	case "$dir" in ./bench/tableflip-echo*) continue ;; esac
	echo "== fuzz $dir $name ($FUZZTIME)"
	ran=$((ran + 1))
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "$dir"; then
		echo "FAIL: $dir $name" >&2
		failed=$((failed + 1))
	fi
done < <(grep -rHo --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*' . |
	sed -E 's/:func /:/' | sort -u)
echo "fuzz: $ran targets, $failed failed"
[ "$failed" -eq 0 ]
