#!/usr/bin/env bash
# rolling.sh: deploy a release with the rolling strategy (deploy-release.sh
# --strategy rolling), for scripts and muscle memory that name the strategy.
set -euo pipefail

if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
	cat <<'HELP'
usage: rolling.sh --root DIR [--name NAME | --state-dir DIR] [options] ARTIFACT

Deploys ARTIFACT as the next release under DIR/releases with the rolling
strategy.

rolling: one slot at a time, zd-run starts the new worker, waits until it
is ready, makes it the slot's worker, then drains and stops the old one.
Capacity never drops below N workers; for a while both releases serve.
A new worker that fails stops the new ones and gives the slots that had
switched the old release back.

Options, the steps, the rollback and the exit codes are those of
deploy-release.sh (its --help), with --strategy rolling fixed:

  --root DIR, --name NAME, --state-dir DIR, --timeout D, --observe D,
  --health-cmd CMD, --keep N

exit codes: 0 deployed; 1 failed, nothing changed; 2 usage; 3 refused
(reload aborted), old release serving; 4 zd-run not running; 5 unhealthy
after the switch, rolled back; 8 the rollback failed too.
HELP
	exit 0
fi
ZD_PROG=rolling.sh ZD_FIXED_STRATEGY=rolling exec "$(dirname "${BASH_SOURCE[0]}")/deploy-release.sh" "$@"
