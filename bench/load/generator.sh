#!/usr/bin/env bash
# The load generator's own ceiling: Poisson arrivals against the fake server (a separate
# process answering every request with a 4-chunk SSE stream), at rising rates. The generator
# keeps up when it sends at the offered rate with a small send lag and no errors.
#   bench/load/generator.sh [DURATION_S]     -> results/generator_rateR.json
. "$(dirname "$0")/lib.sh"
DUR=${1:-10}
RATES=${RATES:-"1000 2000 4000 8000"}
for rate in $RATES; do
    la=$(wait_quiet) || log "still busy (load $la): measuring anyway"
    "$SYN" bench load --fake-server 18302 2>"$WORK/fake.log" &
    fake=$!
    for i in $(seq 50); do grep -q listening "$WORK/fake.log" && break; sleep 0.1; done
    log "generator at $rate/s, load average $la"
    "$SYN" bench load --url http://127.0.0.1:18302 --model fake --rate "$rate" --duration "$DUR" \
        -q --json "$OUT/generator_rate${rate}.json" >&2
    annotate "$OUT/generator_rate${rate}.json" "load_average_before=$la" \
        "load_average_after=$(loadavg)" "rate=$rate"
    kill "$fake"
    wait "$fake" 2>/dev/null || true
done
