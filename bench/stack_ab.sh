#!/usr/bin/env bash
# Two builds of the stack against each other, alternating, under the same 1-token load (issue 5):
# for each binary in turn, a private redis-server, `synapse gateway` and one `synapse worker`
# (stories260K, --threads 1, --max-seqs 64), a warm-up second, then LOAD for DURATION seconds.
# Per run it prints the client's view (requests/s or the open-loop TTFT p50/p90/p99), the CPU each
# process spent per request (from /proc/PID/stat), Redis's socket reads per request (INFO stats
# total_reads_processed: one per round trip that reached it) and its commands per request
# (INFO commandstats), and the worker's steps (its /metrics). Not a test; timings on a shared
# machine mean something only against the other binary in the same series.
#
#   bench/stack_ab.sh A_BINARY B_BINARY [ROUNDS]          (default 4 rounds: A B A B ...)
#
# Environment: LOAD (default "rate 5000": `synapse bench load` open loop, Poisson, streaming;
# "conns N": wrk closed loop at N connections), DURATION (default 5), MODEL (default
# ../shared/models/stories260K.gguf), PORT (default 18490; the worker's metrics use PORT+1),
# OUT (default build/bench/stack_ab: one file per run, and summary.txt).
set -euo pipefail
for tool in redis-server redis-cli wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "stack_ab.sh: needs $tool" >&2; exit 1; }
done
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,16p' "$0" >&2; exit 2; }
A=$(realpath "$1") B=$(realpath "$2") ROUNDS=${3:-4}
LOAD=${LOAD:-rate 5000}
DURATION=${DURATION:-5}
MODEL=$(realpath "${MODEL:-../shared/models/stories260K.gguf}")
PORT=${PORT:-18490}
OUT=${OUT:-build/bench/stack_ab}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/synapse-stack-ab.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$WORK/r.pid" ] && kill "$(cat "$WORK/r.pid")" 2>/dev/null || true
    sleep 0.3
    rm -rf "$WORK"
}
trap cleanup EXIT
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # $1: label, $2: binary
    local bin=$WORK/synapse-$1 res=$OUT/run-$(date -u +%H%M%S)-$1.txt
    cp "$2" "$bin"
    rm -f "$WORK/r.sock"
    redis-server --port 0 --unixsocket "$WORK/r.sock" --save '' --appendonly no --daemonize yes \
        --pidfile "$WORK/r.pid" --logfile "$WORK/r.log"
    for _ in $(seq 50); do [ -S "$WORK/r.sock" ] && break; sleep 0.1; done
    "$bin" gateway --redis "unix://$WORK/r.sock" --model stories260K --port "$PORT" \
        --max-queue 100000 >"$WORK/gw.log" 2>&1 &
    local gw=$!
    "$bin" worker --model "$MODEL" --name stories260K --redis "unix://$WORK/r.sock" \
        --idle-timeout 0 --threads 1 --max-seqs 64 --metrics-port $((PORT + 1)) >"$WORK/wk.log" 2>&1 &
    local wk=$!
    PIDS=("$gw" "$wk")
    for _ in $(seq 200); do
        curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz" | grep -q 200 && break
        sleep 0.05
    done
    "$bin" bench load --url "http://127.0.0.1:$PORT" --model stories260K --rate 1000 --duration 1 \
        --prompt-tokens 4 --output-tokens 1 -q >/dev/null 2>&1
    redis-cli -s "$WORK/r.sock" config resetstat >/dev/null
    local rp; rp=$(cat "$WORK/r.pid")
    local c0="$(cpu "$gw") $(cpu "$wk") $(cpu "$rp")"
    local m0; m0=$(curl -s "http://127.0.0.1:$((PORT + 1))/metrics" | grep -E '^synapse_worker_step_(sequences|duration_seconds)_(sum|count)' | awk '{print $2}' | tr '\n' ' ')
    local client n
    if [ "${LOAD%% *}" = conns ]; then
        cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body   = '{"model":"stories260K","prompt":"Once upon a time","max_tokens":1,"temperature":0}'
wrk.headers["Content-Type"] = "application/json"
LUA
        wrk -t1 -c"${LOAD#* }" -d"${DURATION}s" --latency -s "$WORK/post.lua" \
            "http://127.0.0.1:$PORT/v1/completions" >"$WORK/client.txt"
        n=$(awk '/requests in/ {print $1}' "$WORK/client.txt")
        client=$(awk '/Requests\/sec/ {r=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
                      END {printf "rps %.0f p50 %s p99 %s", r, p50, p99}' "$WORK/client.txt")
    else
        "$bin" bench load --url "http://127.0.0.1:$PORT" --model stories260K --rate "${LOAD#* }" \
            --duration "$DURATION" --prompt-tokens 4 --output-tokens 1 -q \
            --json "$WORK/client.json" >/dev/null 2>&1
        read -r n client < <(python3 -c '
import json, sys
j = json.load(open(sys.argv[1])); t = j["ttft"]
print(j["ok"], "ttft p50 %.2f p90 %.2f p99 %.2f ms" % (t["p50_ms"], t["p90_ms"], t["p99_ms"]))' "$WORK/client.json")
    fi
    local c1="$(cpu "$gw") $(cpu "$wk") $(cpu "$rp")"
    local m1; m1=$(curl -s "http://127.0.0.1:$((PORT + 1))/metrics" | grep -E '^synapse_worker_step_(sequences|duration_seconds)_(sum|count)' | awk '{print $2}' | tr '\n' ' ')
    local per; per=$(echo "$c0 $c1 $n" | awk '{n = $7; printf "cpu_us gateway %.1f worker %.1f redis %.1f",
        ($4 - $1) * 1e4 / n, ($5 - $2) * 1e4 / n, ($6 - $3) * 1e4 / n}')
    local reads; reads=$(redis-cli -s "$WORK/r.sock" info stats | tr -d '\r' |
        awk -F: -v n="$n" '/^total_reads_processed/ {printf "redis_reads %.2f", $2 / n}')
    local steps; steps=$(echo "$m0 $m1" | awk '{printf "seqs_per_step %.2f step_us %.0f",
        ($5 - $1) / ($6 - $2), 1e6 * ($7 - $3) / ($8 - $4)}')
    redis-cli -s "$WORK/r.sock" info commandstats | tr -d '\r' | grep '^cmdstat' |
        awk -F'[:=,]' -v n="$n" '{printf "%s %.2f/req %.2f us\n", $1, $3 / n, $7}' >"$res"
    kill "$gw" "$wk" 2>/dev/null || true
    wait "$gw" "$wk" 2>/dev/null || true
    kill "$(cat "$WORK/r.pid")"
    sleep 0.3
    local line="$1 $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg) n $n $client $per $reads $steps"
    echo "$line" | tee -a "$OUT/summary.txt"
    echo "$line" >>"$res"
}

echo "# bench/stack_ab.sh $(date -u '+%Y-%m-%d %H:%M UTC') A=$1 B=$2 LOAD='$LOAD' DURATION=$DURATION" |
    tee -a "$OUT/summary.txt"
for r in $(seq "$ROUNDS"); do
    run A "$A"
    run B "$B"
done
