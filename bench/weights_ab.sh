#!/usr/bin/env bash
# Resident weights (read into memory on 2 MiB pages, the CPU default) against mapped ones (mmap of
# the file), alternating, in one run (not a test; docs/BENCHMARKS.md "Weights on huge pages"):
#   1. bench/idle_touch on the stories15m file: a first read after 1 s idle, per kind of memory;
#   2. `synapse bench engine --weights MODE` on tinyllama-1.1b Q8_0 and stories15m F16 (2
#      threads): load time, first token, decode tokens/s at batch 1 and 16;
#   3. a whole stack (`synapse up`, one stories15m worker of 1 engine thread) at 1 request/s
#      (Poisson, so ~1 s idle between requests), 64-token prompts, 4 output tokens: TTFT.
#   bench/weights_ab.sh [ROUNDS]     (default 2; results in $OUT, default build/bench/weights_ab)
# Environment: SYNAPSE (default ./synapse), MODELS (default build/bench-models: the random
# stories15m-f16.gguf and tinyllama-1.1b-q8_0.gguf that `make bench` generates), PORT (18396).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
SYN=${SYNAPSE:-./synapse}
MODELS=${MODELS:-build/bench-models}
OUT=${OUT:-build/bench/weights_ab}
PORT=${PORT:-18396}
mkdir -p "$OUT"
S15=$MODELS/stories15m-f16.gguf TL=$MODELS/tinyllama-1.1b-q8_0.gguf
for f in "$S15" "$TL"; do
    [ -s "$f" ] || { echo "weights_ab.sh: $f missing (make bench generates it)" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/synapse-weights-ab.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cp "$SYN" "$WORK/synapse"
SYN=$WORK/synapse
cc -std=c11 -O2 -o "$WORK/idle_touch" bench/idle_touch.c
echo "# bench/weights_ab.sh $(date -u '+%Y-%m-%d %H:%M UTC') commit $(git describe --always --dirty)" |
    tee "$OUT/summary.txt"
"$WORK/idle_touch" "$S15" 1 4 | tee -a "$OUT/summary.txt"

engine() { # $1 mode, $2 model
    "$SYN" bench engine -m "$2" -t 2 --weights "$1" --batch 1,16 --prompt 64 --gen 32 --reps 3 \
        --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin); dec = {x["batch"]: x["tokens_per_s"] for x in d["decode"]}
print("load_s %.3f first_token_s %.3f decode_b1 %.1f decode_b16 %.1f" % (d["load_s"],
      d["first_token_s"], dec[1], dec[16]))'
}
stack() { # $1 mode: TTFT at 1 request/s
    SYNAPSE_WEIGHTS=$1 "$SYN" up --model "$S15" --name s15m --port "$PORT" --min-warm 1 \
        --max-workers 1 --worker-threads 1 --log-dir "$WORK" >"$WORK/up.log" 2>&1 &
    local up=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz" | grep -q 200 && break
        sleep 0.1
    done
    "$SYN" bench load --url "http://127.0.0.1:$PORT" --model s15m --rate 1 --duration 30 \
        --prompt-tokens 64 --output-tokens 4 -q --json "$WORK/load.json" >/dev/null 2>&1
    kill "$up"
    wait "$up" || true
    python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["ttft"]
print("ttft_p50_ms %.2f p90 %.2f p99 %.2f" % (t["p50_ms"], t["p90_ms"], t["p99_ms"]))' "$WORK/load.json"
}
for r in $(seq "$ROUNDS"); do
    for mode in resident mapped; do
        echo "$mode round $r tinyllama-q8_0 $(engine "$mode" "$TL")" | tee -a "$OUT/summary.txt"
        echo "$mode round $r stories15m-f16 $(engine "$mode" "$S15")" | tee -a "$OUT/summary.txt"
        echo "$mode round $r stack-1rps $(stack "$mode")" | tee -a "$OUT/summary.txt"
    done
done
