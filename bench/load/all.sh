#!/usr/bin/env bash
# Every load and cost measurement in order, then the charts. Each step waits for a quiet
# machine itself (lib.sh wait_quiet). SYN=/path/to/synapse pins the binary for the whole run.
. "$(dirname "$0")/lib.sh"
D=$(dirname "$0")
# wait for quiet up to 30 minutes in all; after that each measurement waits a minute at most
export QUIET_DEADLINE=${QUIET_DEADLINE:-$(($(date +%s) + 1800))}
"$D/engine.sh"
"$D/coldstart.sh" 1
"$D/coldstart.sh" 2
"$D/generator.sh"
"$D/batching.sh"
"$D/validate.sh"
"$D/traces.sh"
"$D/charts.sh"
