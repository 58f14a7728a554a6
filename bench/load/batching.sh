#!/usr/bin/env bash
# Batching on (--max-seqs 16) against off (--max-seqs 1) at rising Poisson rates: one worker
# with 2 engine threads, stories15m shape in F16, 64-token prompts, 64 output tokens, the same
# load as the llama.cpp reference in issue 8. Goodput with TTFT <= 200 ms and TPOT <= 50 ms.
#   bench/load/batching.sh [DURATION_S]      -> results/batching_seqsQ_rateR.json
. "$(dirname "$0")/lib.sh"
DUR=${1:-30}
RATES_ON=${RATES_ON:-"5 10 15 20 25 30 35 40 50"}
RATES_OFF=${RATES_OFF:-"5 10 15 20 25"}
ensure_model
for seqs in 16 1; do
    rates=$RATES_ON
    [ "$seqs" = 1 ] && rates=$RATES_OFF
    for rate in $rates; do
        la=$(wait_quiet) || log "still busy (load $la): measuring anyway"
        start_up batching 18301 --min-warm 1 --max-workers 1 --max-seqs "$seqs" \
            --worker-threads 2 --max-queue 1024
        log "max-seqs $seqs, rate $rate/s, load average $la"
        "$SYN" bench load --url http://127.0.0.1:18301 --model s15m --rate "$rate" \
            --duration "$DUR" --prompt-tokens 64 --output-tokens 64 --slo-ttft-ms 200 \
            --slo-tpot-ms 50 --timeout 120 -q \
            --json "$OUT/batching_seqs${seqs}_rate${rate}.json" \
            --csv "$OUT/batching_seqs${seqs}_rate${rate}.csv" >&2
        annotate "$OUT/batching_seqs${seqs}_rate${rate}.json" "load_average_before=$la" \
            "load_average_after=$(loadavg)" "max_seqs=$seqs" "rate=$rate"
        stop_up
    done
done
