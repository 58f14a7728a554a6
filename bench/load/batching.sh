#!/usr/bin/env bash
# Batching on (--max-seqs 16) against off (--max-seqs 1) at rising Poisson rates: one worker
# with $THREADS engine threads (default 2, as the llama.cpp reference), stories15m shape in
# F16, 64-token prompts, 64 output tokens, the same load as the llama.cpp reference in issue 8.
# Goodput with TTFT <= 200 ms and TPOT <= 50 ms.
#   bench/load/batching.sh [DURATION_S]      -> results/batching[_tT]_seqsQ_rateR.{json,csv}
. "$(dirname "$0")/lib.sh"
DUR=${1:-30}
THREADS=${THREADS:-2}
RATES_ON=${RATES_ON:-"5 10 15 20 25 30 35 40 50"}
RATES_OFF=${RATES_OFF:-"5 10 15 20 25"}
SEQS=${SEQS:-"16 1"}
tag=batching
[ "$THREADS" = 2 ] || tag=batching_t$THREADS
ensure_model

one() {
    local seqs=$1 rate=$2
    start_up batching 18301 --min-warm 1 --max-workers 1 --max-seqs "$seqs" \
        --worker-threads "$THREADS" --max-queue 1024
    log "max-seqs $seqs, $THREADS thread(s), rate $rate/s"
    "$SYN" bench load --url http://127.0.0.1:18301 --model s15m --rate "$rate" \
        --duration "$DUR" --prompt-tokens 64 --output-tokens 64 --slo-ttft-ms 200 \
        --slo-tpot-ms 50 --timeout 120 -q \
        --json "$OUT/${tag}_seqs${seqs}_rate${rate}.json" \
        --csv "$OUT/${tag}_seqs${seqs}_rate${rate}.csv" >&2
    stop_up
}

for seqs in $SEQS; do
    rates=$RATES_ON
    [ "$seqs" = 1 ] && rates=$RATES_OFF
    for rate in $rates; do
        measure one "$seqs" "$rate"
        annotate "$OUT/${tag}_seqs${seqs}_rate${rate}.json" "load_average_before=$M_LA" \
            "other_sessions_cpu_share=$M_OTHERS" "max_seqs=$seqs" "rate=$rate" \
            "threads=$THREADS"
    done
done
