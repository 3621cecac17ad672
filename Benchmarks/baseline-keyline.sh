#!/usr/bin/env bash
# What the peer baseline (../shared/bench, fixed: never edited) runs as "$KEYLINE": it starts its
# simulated fleet with `$KEYLINE sim serve …`, from when the simulator was a keyline subcommand.
# The simulator is its own binary now (a station's keyline carries none of it), so this forwards
# `sim ARGS…` to keyline-sim (KEYLINE_SIM) and refuses anything else.
set -eu
if [ "${1:-}" != sim ]; then
  echo "baseline-keyline.sh: only 'sim …' is forwarded (to keyline-sim); got: $*" >&2
  exit 64
fi
shift
exec "${KEYLINE_SIM:?set KEYLINE_SIM to the keyline-sim binary}" "$@"
