#!/usr/bin/env bash
# Scale to zero against always-on over both Azure LLM inference traces (2023, CC-BY-4.0:
# Patel et al., "Splitwise", ISCA 2024), simulated for a full hour each at real speed. Lengths
# are scaled by 0.1 to fit the stories15m shape's 256-token context; a worker is one 2-thread
# stories15m F16 worker (engine.sh), priced at $PRICE per worker-hour. The same sweep runs with
# the cold start measured here and with longer ones (a container pull, a VM boot).
#   bench/load/traces.sh                     -> results/traces_NAME_coldC.json (+ timelines)
. "$(dirname "$0")/lib.sh"
PRICE=${PRICE:-0.10}
SIM_BIN=${SIM_BIN:-$SYN}
COLDS=${COLDS:-"measured 10 60"}
POLICIES=(always-on:1 always-on:2 scale-to-zero:5 scale-to-zero:30 scale-to-zero:120
    min-warm:1:30 predictive:0:30 predictive:1:30)
[ -f "$OUT/engine_t2_p64.json" ] || "$(dirname "$0")/engine.sh"
measured=$(python3 -c "import json; print(json.load(open('$OUT/coldstart_t2.json'))['cold_penalty_s'])" \
    2>/dev/null || python3 -c "import json; print(json.load(open('$OUT/coldstart_t1.json'))['cold_penalty_s'])")
args=()
for p in "${POLICIES[@]}"; do args+=(--policy "$p"); done
for name in code conv; do
    for cold in $COLDS; do
        c=$cold
        [ "$cold" = measured ] && c=$measured
        log "sim: $name trace, cold start $c s"
        "$SIM_BIN" bench sim --trace "$TRACES/AzureLLMInferenceTrace_$name.csv" --token-scale 0.1 \
            --max-context 250 --max-workers 4 --max-seqs 16 --price-per-hour "$PRICE" \
            --model-json "$OUT/engine_t2_p64.json" --model-json "$OUT/engine_t2_p256.json" \
            --cold-start "$c" "${args[@]}" --json "$OUT/traces_${name}_cold${cold}.json" \
            --timeline "$WORK/traces_${name}_cold${cold}.timeline.csv"
    done
done
