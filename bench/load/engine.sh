#!/usr/bin/env bash
# The service-time model for the simulator: `synapse bench engine --json` on the stories15m
# shape in F16 with 1 and 2 threads, decode at batch 1..32 and prefill of 64 and 256 tokens.
#   bench/load/engine.sh                     -> results/engine_tT_pP.json
. "$(dirname "$0")/lib.sh"
ensure_model
for t in 1 2; do
    for p in 64 256; do
        la=$(wait_quiet) || log "still busy (load $la): measuring anyway"
        log "bench engine -t $t --prompt $p, load average $la"
        "$SYN" bench engine -m "$MODEL" -t "$t" --batch 1,2,4,8,16,32 --prompt "$p" --gen 32 \
            --reps 5 --json >"$OUT/engine_t${t}_p${p}.json"
        annotate "$OUT/engine_t${t}_p${p}.json" "load_average_before=$la" \
            "load_average_after=$(loadavg)"
    done
done
