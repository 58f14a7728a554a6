#!/usr/bin/env bash
# The load generator's own ceiling: Poisson arrivals against the fake server (a separate
# process answering every request with a 4-chunk SSE stream), at rising rates. The generator
# keeps up when it sends at the offered rate with a small send lag and no errors.
#   bench/load/generator.sh [DURATION_S]     -> results/generator_rateR.json
. "$(dirname "$0")/lib.sh"
DUR=${1:-10}
RATES=${RATES:-"1000 2000 4000 8000"}

one() {
    "$SYN" bench load --fake-server 18302 2>"$WORK/fake.log" &
    local fake=$! i
    for i in $(seq 50); do grep -q listening "$WORK/fake.log" && break; sleep 0.1; done
    log "generator at $1/s"
    "$SYN" bench load --url http://127.0.0.1:18302 --model fake --rate "$1" --duration "$DUR" \
        -q --json "$OUT/generator_rate$1.json" >&2
    kill "$fake"
    wait "$fake" 2>/dev/null || true
}

for rate in $RATES; do
    measure one "$rate"
    annotate "$OUT/generator_rate${rate}.json" "load_average_before=$M_LA" \
        "other_sessions_cpu_share=$M_OTHERS" "rate=$rate"
done
