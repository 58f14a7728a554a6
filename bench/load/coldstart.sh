#!/usr/bin/env bash
# Cold starts: a pool scaled to zero (--min-warm 0, workers exit after 2 idle seconds) gets one
# request every 6 s, so every request starts a worker; then the same requests against a warm
# worker. Reports the worker's own cold start (process start to ready, from its log), the
# pool's start-to-registered time, and TTFT cold against warm (the penalty a user sees).
#   bench/load/coldstart.sh [THREADS] [N]    -> results/coldstart_tT.json
. "$(dirname "$0")/lib.sh"
THREADS=${1:-1}
N=${2:-10}
ensure_model
# the same N arrivals for both runs: one every 6 s (a trace file)
trace=$WORK/coldstart_trace.csv
{
    echo "time,prompt_tokens,output_tokens"
    for i in $(seq 0 $((N - 1))); do echo "$((i * 6)),64,16"; done
} >"$trace"
one() {
    log "cold starts with $THREADS engine thread(s)"
    start_up coldstart 18303 --min-warm 0 --max-workers 1 --idle-timeout 2 \
        --worker-threads "$THREADS"
    "$SYN" bench load --url http://127.0.0.1:18303 --model s15m --trace "$trace" -q \
        --json "$WORK/coldstart_cold.json" --requests >&2
    sleep 4
    stop_up
    cold_log=$UP_LOG
    cat "$WORK"/coldstart-workers/*.log >"$WORK/coldstart_workers.log" 2>/dev/null || true
    start_up warmstart 18304 --min-warm 1 --max-workers 1 --worker-threads "$THREADS"
    "$SYN" bench load --url http://127.0.0.1:18304 --model s15m --trace "$trace" -q \
        --json "$WORK/coldstart_warm.json" --requests >&2
    stop_up
}
measure one
la=$M_LA
python3 - "$cold_log" "$WORK/coldstart_workers.log" "$WORK/coldstart_cold.json" \
    "$WORK/coldstart_warm.json" "$la" "$THREADS" "$OUT/coldstart_t$THREADS.json" "$M_OTHERS" <<'PY'
import json, re, statistics as st, sys
up_log, workers_log, cold_p, warm_p, la, threads, out, others = sys.argv[1:]
pool = [float(m) for m in re.findall(r"ready ([0-9.]+) s after it was started", open(up_log).read())]
own = [float(m) for m in re.findall(r"cold start ([0-9.]+) s", open(workers_log).read())]
def ttfts(p):
    j = json.load(open(p))
    cols = j["request_columns"]
    i = cols.index("ttft_s")
    return [r[i] for r in j["requests"] if r[i] >= 0]
cold, warm = ttfts(cold_p), ttfts(warm_p)
res = {
    "threads": int(threads), "load_average_before": float(la), "starts": len(pool),
    "other_sessions_cpu_share": float(others),
    "worker_cold_start_s": {"median": st.median(own), "min": min(own), "max": max(own)} if own else None,
    "pool_start_to_registered_s": {"median": st.median(pool), "min": min(pool), "max": max(pool)} if pool else None,
    "ttft_cold_s": {"median": st.median(cold), "min": min(cold), "max": max(cold)},
    "ttft_warm_s": {"median": st.median(warm), "min": min(warm), "max": max(warm)},
    "cold_penalty_s": st.median(cold) - st.median(warm),
}
json.dump(res, open(out, "w"), indent=1)
print(json.dumps(res, indent=1))
PY
