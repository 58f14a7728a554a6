#!/usr/bin/env bash
# Gateway benchmarks (issue 5, "Performance"): what the gateway + Redis queue + worker add to the
# engine, idle streaming connections, and cold starts. Not a test: it reports figures measured
# in one run, each with the load average of the (shared) machine.
#
#   bench/gateway.sh [overhead|conns|coldstart|all]      (default all)
#
# overhead   one worker (stories260K, --threads 1) behind the gateway, 1-token completions:
#            - the engine in-process (bench/gateway_engine.c: tokenize, prefill, sample one
#              token, detokenize; one request after another): requests/s, latency p50/p99;
#            - wrk, one connection (closed loop): unloaded latency p50/p99 through the stack;
#            - wrk at each of WRK_CONNS connections (closed loop): requests/s against latency,
#              up to the stack's request ceiling;
#            - `synapse bench load` open loop (streaming) at RATES: e2e p50/p99 at a given rate.
#            Added latency = stack - engine at the same percentile.
#            Floors, in the same run (what the clients and the machine cost without the stack):
#            - wrk at each of FLOOR_CONNS connections on the gateway's GET /healthz (one HTTP
#              hop, no Redis, no worker);
#            - `bench load` at each of FLOOR_RATES against its own fake server (1 chunk).
# conns      CONNS (default 1000,5000) streaming requests held open while the worker is stopped
#            (SIGSTOP; its registry entry stays alive), the gateway's RSS at 0 and at each
#            count; then the worker resumes and every request must end with [DONE], and the
#            RSS after all have closed.
# coldstart  `synapse up --min-warm 0`: a request hitting an empty pool, time to its first
#            token; the worker's own logged cold start (process start to ready: map + warm-up
#            step); `synapse bench engine` load time (map + first token). For stories260K and a
#            random tinyllama-1.1b Q8_0 (generated into $MODELS), the latter with its pages in
#            the page cache and evicted (posix_fadvise DONTNEED on that file only).
#
# Environment: SYNAPSE (default ./synapse), WORKER_SYNAPSE (the binary that runs the worker,
# default SYNAPSE: an A/B of two gateways keeps the same worker), LOAD_SYNAPSE (the one that
# runs `bench load`, default SYNAPSE), LIB (the libsynapse.a the
# in-process baseline links, default build/libsynapse.a), OUT (default build/bench/gateway),
# MODEL (default ../shared/models/stories260K.gguf), MODELS (default /tmp), DURATION (default
# 10 s per wrk run), WRK_CONNS (default 64; a list, e.g. "4 8 16 64"), RATES (default
# "1000 3000"), CONNS (default "1000 5000"),
# COLD_N (default 5), COLD_TL (0: stories260K only), PORT (default 18480), GW_NOFILE (conns: the gateway's open-file limit),
# FLOOR_CONNS, FLOOR_RATES (default none), WARMUP (seconds of the open-loop runs' arrivals sent
# first and left out of their figures: `bench load --warmup`; default 0), NICE (overhead: run Redis, gateway, worker, the baseline and the clients at this nice value,
# e.g. -10, so that other work on a shared machine yields to them). Needs redis-server, wrk,
# python3, cc.
set -euo pipefail

for tool in redis-server wrk python3 cc curl; do
    command -v "$tool" >/dev/null || {
        echo "gateway.sh: needs $tool (Debian: apt-get install ${tool/cc/gcc})" >&2
        exit 1
    }
done
cd "$(dirname "$0")/.."
ROOT=$PWD
SYN=${SYNAPSE:-./synapse}
WSYN=${WORKER_SYNAPSE:-$SYN}
LSYN=${LOAD_SYNAPSE:-$SYN}
LIB=${LIB:-build/libsynapse.a}
OUT=${OUT:-build/bench/gateway}
MODEL=${MODEL:-../shared/models/stories260K.gguf}
MODELS=${MODELS:-/tmp}
DURATION=${DURATION:-10}
WRK_CONNS=${WRK_CONNS:-64}
RATES=${RATES:-"1000 3000"}
CONNS=${CONNS:-"1000 5000"}
COLD_N=${COLD_N:-5}
PORT=${PORT:-18480}
NICE_CMD=()
[ -n "${NICE:-}" ] && NICE_CMD=(nice -n "$NICE")
NAME=stories260K
WHAT=${1:-all}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/synapse-gwbench.XXXXXX)
cp "$SYN" "$WORK/synapse" # a private copy: the tree is shared and may be rebuilt meanwhile
SYN=$WORK/synapse
cp "$WSYN" "$WORK/synapse-worker"
WSYN=$WORK/synapse-worker
cp "$LSYN" "$WORK/synapse-load"
LSYN=$WORK/synapse-load
MODEL=$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")
PIDS=()

log() { echo "gateway.sh: $*" >&2; }
up() { echo "$(date -u +%H:%M:%S) $(cut -d' ' -f1-3 /proc/loadavg)"; }
cleanup() {
    for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
    [ -f "$WORK/redis.pid" ] && kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true
    sleep 0.3
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

COMMIT=$(git describe --always --dirty 2>/dev/null || echo unknown)
{
    echo "# bench/gateway.sh $WHAT, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT"
    echo "# $(nproc) CPUs, ulimit -n $(ulimit -n), uptime: $(uptime)"
} | tee "$OUT/header.txt" >&2

start_redis() {
    "${NICE_CMD[@]}" redis-server --port 0 --unixsocket "$WORK/redis.sock" --save '' --appendonly no \
        --daemonize yes --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log"
    for _ in $(seq 50); do [ -S "$WORK/redis.sock" ] && break; sleep 0.1; done
    REDIS=unix://$WORK/redis.sock
}
stop_redis() {
    kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true
    rm -f "$WORK/redis.pid"
    sleep 0.3
}
# start_gateway [args...]: sets GW_PID
start_gateway() {
    # GW_NOFILE: run the gateway under this open-file limit (soft and hard), e.g. 1024
    ${GW_NOFILE:+prlimit --nofile="$GW_NOFILE:$GW_NOFILE" --} \
        "${NICE_CMD[@]}" "$SYN" gateway --redis "$REDIS" --model "$NAME" --port "$PORT" "$@" >"$WORK/gateway.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    for _ in $(seq 100); do grep -q listening "$WORK/gateway.log" && return 0; sleep 0.05; done
    log "the gateway did not start:"; cat "$WORK/gateway.log" >&2; exit 1
}
# start_worker [args...]: sets WK_PID, waits until it is ready and the gateway has seen it
start_worker() {
    "${NICE_CMD[@]}" "$WSYN" worker --model "$MODEL" --name "$NAME" --redis "$REDIS" --idle-timeout 0 \
        "$@" >"$WORK/worker.log" 2>&1 &
    WK_PID=$!
    PIDS+=("$WK_PID")
    for _ in $(seq 100); do grep -q "ready:" "$WORK/worker.log" && break; sleep 0.05; done
    for _ in $(seq 100); do
        curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz" | grep -q 200 && return 0
        sleep 0.05
    done
    log "no ready worker:"; cat "$WORK/worker.log" "$WORK/gateway.log" >&2; exit 1
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_s() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }
cpu_all() { echo "$(cpu_s "$GW_PID") $(cpu_s "$WK_PID") $(cpu_s "$(cat "$WORK/redis.pid")")"; }
# snap / busy SNAP: the machine's busy share over a measurement, and the share gateway, worker and
# Redis took of it ("busy=78% stack=55%": the rest is the clients and everyone else's work)
snap() {
    local t; t=$(awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat)
    local s=0 p
    for p in "$GW_PID" "$WK_PID" "$(cat "$WORK/redis.pid")"; do
        s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat")))
    done
    echo "$t $s"
}
busy() {
    echo "$1 $(snap)" | awk '{dt=$5-$2; if (dt <= 0) dt=1; printf "busy=%.0f%% stack=%.0f%%", 100*($4-$1)/dt, 100*($6-$3)/dt}'
}

# ---- overhead ----
overhead() {
    log "building the in-process baseline"
    cc -std=c11 -O2 -Iinclude -pthread -o "$WORK/gateway_engine" bench/gateway_engine.c \
        "$LIB" -lhiredis -levent -ljansson -lcurl -lcrypto -lm
    local prompt="Once upon a time"
    local body="{\"model\":\"$NAME\",\"prompt\":\"$prompt\",\"max_tokens\":1,\"temperature\":0}"
    cat >"$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.body   = '$body'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\":%d,\"non2xx\":%d,\"errors\":%d,\"rps\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f}\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000))
end
EOF
    start_redis
    start_gateway --max-queue 100000
    start_worker --threads 1 --max-seqs "${MAX_SEQS:-64}"
    local res=$OUT/overhead.txt
    : >"$res"
    echo "engine $(up) $("${NICE_CMD[@]}" "$WORK/gateway_engine" "$MODEL" "$prompt" 20000 1)" | tee -a "$res" >&2
    curl -s "http://127.0.0.1:$PORT/v1/completions" -d "$body" >"$WORK/one.json"
    grep -q '"finish_reason":"length"' "$WORK/one.json" || { log "bad answer: $(cat "$WORK/one.json")"; exit 1; }
    local cpu0; cpu0=$(cpu_all)
    for c in 1 $WRK_CONNS; do
        local u; u=$(up)
        local s0; s0=$(snap)
        local j; j=$("${NICE_CMD[@]}" wrk -t1 -c"$c" -d"${DURATION}s" -s "$WORK/post.lua" \
            "http://127.0.0.1:$PORT/v1/completions" | sed -n 's/^JSON //p')
        echo "wrk_c$c $u $(busy "$s0") $j" | tee -a "$res" >&2
    done
    # CPU per request of each process over the wrk runs (wrk itself: its own user+sys)
    echo "cpu_s_wrk gateway worker redis: $(cpu_all) (start: $cpu0)" | tee -a "$res" >&2
    grep -v -e '^wrk.method' -e '^wrk.body' -e '^wrk.headers' "$WORK/post.lua" >"$WORK/get.lua"
    for c in ${FLOOR_CONNS:-}; do
        local u; u=$(up)
        local j; j=$("${NICE_CMD[@]}" wrk -t1 -c"$c" -d"${DURATION}s" -s "$WORK/get.lua" \
            "http://127.0.0.1:$PORT/healthz" | sed -n 's/^JSON //p')
        echo "floor_wrk_c$c $u $j" | tee -a "$res" >&2
    done
    for r in $RATES; do
        local u; u=$(up)
        local s0; s0=$(snap)
        "${NICE_CMD[@]}" "$LSYN" bench load --url "http://127.0.0.1:$PORT" --model "$NAME" --rate "$r" \
            --duration "$DURATION" --warmup "${WARMUP:-0}" --prompt-tokens 4 --output-tokens 1 -q \
            --json "$WORK/load_$r.json" >&2 || true
        u="$u $(busy "$s0")"
        echo "load_$r $u $(python3 -c '
import json,sys
j=json.load(open(sys.argv[1]))
e=j["e2e"]
print(json.dumps({"rate":float(sys.argv[2]),"ok":j["ok"],"sent":j["sent"],"rps":j["rps"],
  "send_lag_p99_ms":j["send_lag_p99_ms"],"p50_ms":e["p50_ms"],"p99_ms":e["p99_ms"],
  "max_ms":e["max_ms"],"errors":j["errors"]}))' "$WORK/load_$r.json" "$r")" | tee -a "$res" >&2
        cp "$WORK/load_$r.json" "$OUT/load_$r.json"
    done
    if [ -n "${FLOOR_RATES:-}" ]; then
        "${NICE_CMD[@]}" "$LSYN" bench load --fake-server $((PORT + 1)) --fake-tokens 1 \
            >"$WORK/fake.log" 2>&1 &
        local fake=$!
        PIDS+=("$fake")
        for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$((PORT + 1))/v1/models" && break; sleep 0.1; done
        for r in $FLOOR_RATES; do
            local u; u=$(up)
            "${NICE_CMD[@]}" "$LSYN" bench load --url "http://127.0.0.1:$((PORT + 1))" --model fake \
                --rate "$r" --duration "$DURATION" --warmup "${WARMUP:-0}" --prompt-tokens 4 --output-tokens 1 -q \
                --json "$WORK/floor_$r.json" >/dev/null 2>&1 || true
            echo "floor_load_$r $u $(python3 -c '
import json,sys
j=json.load(open(sys.argv[1]))
e=j["e2e"]
print(json.dumps({"rate":float(sys.argv[2]),"ok":j["ok"],"rps":j["rps"],
  "send_lag_p99_ms":j["send_lag_p99_ms"],"p50_ms":e["p50_ms"],"p99_ms":e["p99_ms"],"max_ms":e["max_ms"]}))' "$WORK/floor_$r.json" "$r")" | tee -a "$res" >&2
        done
        kill "$fake"; wait "$fake" 2>/dev/null || true
    fi
    echo "cpu_s gateway $(awk '{print ($14+$15)/100}' /proc/$GW_PID/stat) worker $(awk '{print ($14+$15)/100}' /proc/$WK_PID/stat) redis $(awk '{print ($14+$15)/100}' /proc/$(cat "$WORK/redis.pid")/stat)" | tee -a "$res" >&2
    kill "$WK_PID" "$GW_PID"; wait "$WK_PID" "$GW_PID" 2>/dev/null || true
    stop_redis
}

# ---- idle streaming connections ----
conns() {
    start_redis
    # the registry entry must outlive the stopped worker: heartbeat TTL = 3 x --heartbeat-ms
    start_gateway --max-queue 100000 --default-deadline-ms 600000
    start_worker --threads 1 --heartbeat-ms 100000
    kill -STOP "$WK_PID"
    local res=$OUT/conns.txt
    echo "rss_kb 0 $(up) $(rss_kb "$GW_PID")" | tee "$res" >&2
    python3 - "$PORT" "$NAME" "$GW_PID" "$WK_PID" "$CONNS" <<'PY' | tee -a "$res" >&2
import asyncio, os, signal, sys, time
port, name, gw, wk, counts = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), [int(x) for x in sys.argv[5].split()]
def rss():
    for l in open(f"/proc/{gw}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
def la(): return time.strftime("%H:%M:%S", time.gmtime()) + " " + " ".join(open("/proc/loadavg").read().split()[:3])
body = ('{"model":"%s","prompt":"Once upon a time","max_tokens":1,"stream":true}' % name).encode()
req = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
results = {"done": 0, "bad": 0}
async def one(opened, release):
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(req); await w.drain()
        opened.append(1)
        data = b""
        # the answer ends with [DONE] (and, chunked, the last chunk): the connection stays open
        while not (b"data: [DONE]" in data and (data.endswith(b"\n0\r\n\r\n") or data.endswith(b"[DONE]\n\n"))):
            chunk = await r.read(65536)
            if not chunk: break
            data += chunk
        ok = data.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in data
        results["done" if ok else "bad"] += 1
        if not ok and results["bad"] <= 3: print("bad answer:", data[:300], file=sys.stderr)
        w.close()
    except Exception as e:
        results["bad"] += 1
        if results["bad"] <= 3: print("error:", e, file=sys.stderr)
async def main():
    tasks, opened = [], []
    t0 = time.time()
    for n in counts:
        while len(tasks) < n:
            tasks.append(asyncio.create_task(one(opened, None)))
            if len(tasks) % 200 == 0: await asyncio.sleep(0.01)
        while len(opened) < n and time.time() - t0 < 120: await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # let the gateway read and queue them all
        print(f"rss_kb {n} {la()} {rss()} opened {len(opened)} finished_early {results['done'] + results['bad']}", flush=True)
    def cpu(p):
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    pids = {"gateway": gw, "worker": wk}
    c0 = {k: cpu(v) for k, v in pids.items()}
    t1 = time.time()
    os.kill(wk, signal.SIGCONT)
    await asyncio.wait_for(asyncio.gather(*tasks), 300)
    print(f"served {la()} done {results['done']} bad {results['bad']} in {time.time() - t1:.2f} s, cpu s " + " ".join(f"{k} {cpu(v) - c0[k]:.2f}" for k, v in pids.items()), flush=True)
    await asyncio.sleep(1.0)
    print(f"rss_kb after_close {la()} {rss()}", flush=True)
asyncio.run(main())
PY
    curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^synapse_gateway_(connections|listener)' | tee -a "$res" >&2 || true
    grep -m3 -E "open-file|connections open|accept" "$WORK/gateway.log" | tee -a "$res" >&2 || true
    kill "$WK_PID" "$GW_PID"; wait "$WK_PID" "$GW_PID" 2>/dev/null || true
    stop_redis
}

# ---- cold start ----
ttft_py='
import socket, sys, time, json
port, name = int(sys.argv[1]), sys.argv[2]
body = json.dumps({"model": name, "prompt": "Once upon a time", "max_tokens": 4, "stream": True}).encode()
t0 = time.time()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
data, first = b"", None
while b"data: [DONE]" not in data:
    c = s.recv(65536)
    if not c: break
    data += c
    if first is None and b"\"text\":\"" in data and b"\"text\":\"\"" not in data.split(b"data: ", 2)[1][:400]:
        first = time.time() - t0
print("%.4f %.4f %s" % (first if first is not None else -1, time.time() - t0, "ok" if data.startswith(b"HTTP/1.1 200") else "bad:" + data[:200].decode(errors="replace")))
'
coldstart_model() { # MODEL_PATH NAME THREADS
    local m=$1 n=$2 t=$3 res=$OUT/coldstart_$2.txt
    : >"$res"
    log "cold starts: $n ($t engine threads)"
    mkdir -p "$WORK/cold-$n"
    SYNAPSE_LOG=info "$SYN" up --model "$m" --name "$n" --port "$PORT" --min-warm 0 --max-workers 1 \
        --idle-timeout 1 --worker-threads "$t" --log-dir "$WORK/cold-$n" >"$WORK/up-$n.log" 2>&1 &
    local up_pid=$!
    PIDS+=("$up_pid")
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
    for i in $(seq "$COLD_N"); do
        # wait until no worker is left (idle timeout 1 s)
        for _ in $(seq 100); do pgrep -P "$up_pid" -f "synapse worker" >/dev/null || break; sleep 0.1; done
        sleep 0.5
        if [ "${EVICT:-0}" = 1 ]; then
            python3 -c 'import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)' "$m"
        fi
        echo "cold $i $(up) ttft_e2e $(python3 -c "$ttft_py" "$PORT" "$n")" | tee -a "$res" >&2
    done
    for i in 1 2 3 4 5; do
        echo "warm $i $(up) ttft_e2e $(python3 -c "$ttft_py" "$PORT" "$n")" | tee -a "$res" >&2
    done
    kill "$up_pid"; wait "$up_pid" 2>/dev/null || true
    cp "$WORK/up-$n.log" "$OUT/"
    grep -ho "ready [0-9.]* s after it was started" "$WORK/up-$n.log" | sed 's/^/pool /' | tee -a "$res" >&2 || true
    cat "$WORK/cold-$n"/*.log 2>/dev/null | grep -o "cold start [0-9.]* s" | sed 's/^/worker /' | tee -a "$res" >&2 || true
    echo "bench_engine $(up) $("$SYN" bench engine -m "$m" --batch 1 --prompt 4 --gen 1 --reps 1 -t "$t" --json 2>/dev/null | python3 -c 'import json,sys; j=json.load(sys.stdin); print(json.dumps({k: v for k, v in j.items() if k in ("load_s", "first_token_s", "membw_gbs", "weight_bytes")}))')" | tee -a "$res" >&2
}
coldstart() {
    coldstart_model "$MODEL" stories260K 1
    [ "${COLD_TL:-1}" = 1 ] || return 0
    local tl=$MODELS/tl-q8.gguf
    [ -s "$tl" ] || "$SYN" model random --shape tinyllama-1.1b --dtype q8_0 -o "$tl" >&2
    coldstart_model "$tl" tl-q8 2
    EVICT=1 coldstart_model "$tl" tl-q8-evicted 2
}

case $WHAT in
overhead) overhead ;;
conns) conns ;;
coldstart) coldstart ;;
all) overhead; conns; coldstart ;;
*) echo "usage: bench/gateway.sh [overhead|conns|coldstart|all]" >&2; exit 2 ;;
esac
log "results in $OUT"
