#!/usr/bin/env bash
# Helpers for the load and cost benchmarks (sourced by the other scripts in bench/load/).
# Everything runs on this machine: a private `synapse up` stack per measurement, the load
# generator, and the simulator. Results go to $OUT (bench/load/results by default).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SYN=${SYN:-$ROOT/synapse}
OUT=${OUT:-$ROOT/bench/load/results}
WORK=${WORK:-/tmp/synapse-bench-load}
MODEL=${MODEL:-$WORK/stories15m-f16.gguf}
TRACES=${TRACES:-$ROOT/../shared/traces/azure-llm-2023}
mkdir -p "$OUT" "$WORK"

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# The stories15m shape in F16 with random weights (deterministic: seed 1).
ensure_model() {
    [ -f "$MODEL" ] || "$SYN" model random --shape stories15m --dtype f16 -o "$MODEL" >&2
}

loadavg() { cut -d' ' -f1 /proc/loadavg; }

# CPU use of the whole machine over the next 3 s, as a fraction of all cores (from /proc/stat).
cpu_busy() {
    local a b
    a=($(head -1 /proc/stat))
    sleep 3
    b=($(head -1 /proc/stat))
    awk -v u1="${a[1]}" -v n1="${a[2]}" -v s1="${a[3]}" -v i1="${a[4]}" -v w1="${a[5]}" \
        -v u2="${b[1]}" -v n2="${b[2]}" -v s2="${b[3]}" -v i2="${b[4]}" -v w2="${b[5]}" \
        'BEGIN { busy = (u2 - u1) + (n2 - n1) + (s2 - s1); all = busy + (i2 - i1) + (w2 - w1);
                 printf "%.2f\n", (all > 0 ? busy / all : 0) }'
}

# Waits until the 1-minute load average is below ${1:-1.5} and the cores are mostly idle right
# now (under 25% busy over 3 s: other engineers share these cores and their benchmarks come
# and go), checking every 10 s for at most ${2:-1800} s, and for at most a minute once
# QUIET_DEADLINE (epoch seconds; all.sh sets it 30 minutes after it starts) has passed. Prints
# the load average it starts at; returns 1 if it never got quiet (the caller goes on and says
# so).
wait_quiet() {
    local max=${1:-${LOAD_MAX:-1.5}} limit=${2:-${LOAD_WAIT:-1800}} waited=0 la busy
    if [ "${QUIET_DEADLINE:-0}" -gt 0 ] && [ "$(date +%s)" -gt "$QUIET_DEADLINE" ] &&
        [ "$limit" -gt 60 ]; then
        limit=60
    fi
    while :; do
        la=$(loadavg)
        if awk -v a="$la" -v m="$max" 'BEGIN { exit !(a < m) }'; then
            busy=$(cpu_busy)
            if awk -v b="$busy" 'BEGIN { exit !(b < 0.25) }'; then
                echo "$la"
                return 0
            fi
        fi
        if [ "$waited" -ge "$limit" ]; then
            echo "$la"
            return 1
        fi
        [ $((waited % 60)) -eq 0 ] && log "load average $la (limit $max) or cores busy: waiting"
        sleep 10
        waited=$((waited + 10))
    done
}

# start_up NAME PORT [synapse up flags...]: a private stack logging at info to $WORK/NAME.log;
# returns once the gateway listens and min_warm workers (if any) are ready.
start_up() {
    local name=$1 port=$2
    shift 2
    UP_LOG=$WORK/$name.log
    rm -rf "$WORK/$name-workers"
    mkdir -p "$WORK/$name-workers"
    SYNAPSE_LOG=${UP_LOG_LEVEL:-info} "$SYN" up --model "$MODEL" --name s15m --port "$port" \
        --log-dir "$WORK/$name-workers" "$@" >"$UP_LOG" 2>&1 &
    UP_PID=$!
    local warm=1 prev="" a i
    for a in "$@"; do
        [ "$prev" = "--min-warm" ] && warm=$a
        prev=$a
    done
    for i in $(seq 300); do
        if grep -q "Press Ctrl-C" "$UP_LOG" &&
            [ "$(grep -c ' ready .* after it was started' "$UP_LOG")" -ge "$warm" ]; then
            return 0
        fi
        kill -0 "$UP_PID" 2>/dev/null || { cat "$UP_LOG" >&2; return 1; }
        sleep 0.1
    done
    log "synapse up did not come up: see $UP_LOG"
    return 1
}

stop_up() {
    kill -TERM "$UP_PID" 2>/dev/null || true
    wait "$UP_PID" 2>/dev/null || true
}

# Worker-seconds of every worker in a `synapse up` log, each from its start to its exit
# (the pool logs "worker X (pid N) exited after T s"), and the count of starts.
worker_seconds() {
    awk '/pool: worker .* exited.* after [0-9.]+ s/ {
            for (i = 1; i <= NF; i++) if ($i == "after") s += $(i + 1); n++ }
         END { printf "%.1f %d\n", s, n }' "$1"
}

# annotate FILE KEY=VALUE...: adds numeric fields to a JSON object file (the machine's state
# around a measurement: load averages, the settings of the run).
annotate() {
    python3 - "$@" <<'PY'
import json, sys
path = sys.argv[1]
j = json.load(open(path))
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    try:
        j[k] = float(v)
    except ValueError:
        j[k] = v
json.dump(j, open(path, "w"))
PY
}

# A snapshot of CPU time: "WALL BUSY MINE" in clock ticks, where BUSY is the whole machine's
# busy time (/proc/stat) and MINE what this session's processes used (their own and their
# reaped children's time). Two snapshots give the share of the cores that other sessions (the
# other engineers on this machine) took while we measured.
SESSION=$(ps -o sid= -p $$ | tr -d ' ')
cpu_snapshot() {
    python3 - "$SESSION" <<'PY'
import os, sys, time
sid = int(sys.argv[1])
hz = os.sysconf("SC_CLK_TCK")
f = open("/proc/stat").readline().split()[1:]
busy = sum(int(x) for i, x in enumerate(f[:8]) if i not in (3, 4))
mine = 0
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        s = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    rest = s[s.rindex(")") + 2:].split()
    if int(rest[3]) == sid:
        mine += sum(int(x) for x in rest[11:15])
print(f"{time.monotonic() * hz:.0f} {busy} {mine}")
PY
}

# others_share "SNAP0" "SNAP1": the share of all cores (0..1) used by other sessions between
# two snapshots.
others_share() {
    local a=($1) b=($2)
    awk -v w="$((b[0] - a[0]))" -v busy="$((b[1] - a[1]))" -v mine="$((b[2] - a[2]))" \
        -v n="$(nproc)" 'BEGIN { o = (busy - mine) / (w * n); printf "%.2f\n", (o < 0 ? 0 : o) }'
}

# measure FUNCTION ARGS...: waits for a quiet machine, runs FUNCTION, and runs it again (up to
# MEASURE_TRIES tries, default 2) when other sessions took more than 15% of the cores meanwhile. Sets M_LA (the
# load average before the kept try) and M_OTHERS (the other sessions' share during it).
measure() {
    local try s0 s1
    for try in $(seq "${MEASURE_TRIES:-2}"); do
        M_LA=$(wait_quiet) || log "still busy (load $M_LA): measuring anyway"
        s0=$(cpu_snapshot)
        "$@"
        s1=$(cpu_snapshot)
        M_OTHERS=$(others_share "$s0" "$s1")
        if awk -v o="$M_OTHERS" 'BEGIN { exit !(o <= 0.15) }'; then
            return 0
        fi
        log "other sessions took ${M_OTHERS} of the cores during '$*' (try $try): again"
    done
    log "kept '$*' with other sessions at ${M_OTHERS} of the cores"
}
