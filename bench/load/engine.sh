#!/usr/bin/env bash
# The service-time model for the simulator: `synapse bench engine --json` on the stories15m
# shape in F16 with 1 and 2 threads, decode at batch 1..32 and prefill of 64 and 256 tokens.
#   bench/load/engine.sh                     -> results/engine_tT_pP.json
. "$(dirname "$0")/lib.sh"
ensure_model

one() {
    log "bench engine -t $1 --prompt $2"
    "$SYN" bench engine -m "$MODEL" -t "$1" --batch 1,2,4,8,16,32 --prompt "$2" --gen 32 \
        --reps 5 --json >"$OUT/engine_t$1_p$2.json"
}

for t in 1 2; do
    for p in 64 256; do
        measure one "$t" "$p"
        annotate "$OUT/engine_t${t}_p${p}.json" "load_average_before=$M_LA" \
            "other_sessions_cpu_share=$M_OTHERS"
    done
done
