#!/usr/bin/env bash
# blue-green.sh: deploy a release with the blue-green strategy (deploy-release.sh
# --strategy blue-green), for scripts and muscle memory that name the strategy.
set -euo pipefail

if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
	cat <<'HELP'
usage: blue-green.sh --root DIR [--name NAME | --state-dir DIR] [options] ARTIFACT

Deploys ARTIFACT as the next release under DIR/releases with the blue-green
strategy.

blue-green: zd-run starts a whole new generation next to the old one; only
when every new worker is ready does it switch (zd-queue's backend set flips
at once; shared listeners gain accepters) and drain the old generation. A
failure before the switch stops the new generation only: nothing of the
new release ever served.

Options, the steps, the rollback and the exit codes are those of
deploy-release.sh (its --help), with --strategy blue-green fixed:

  --root DIR, --name NAME, --state-dir DIR, --timeout D, --observe D,
  --health-cmd CMD, --keep N

exit codes: 0 deployed; 1 failed, nothing changed; 2 usage; 3 refused
(reload aborted), old release serving; 4 zd-run not running; 5 unhealthy
after the switch, rolled back; 8 the rollback failed too.
HELP
	exit 0
fi
ZD_PROG=blue-green.sh ZD_FIXED_STRATEGY=blue-green exec "$(dirname "${BASH_SOURCE[0]}")/deploy-release.sh" "$@"
