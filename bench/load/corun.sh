#!/usr/bin/env bash
# The co-run slowdown for the simulator (bench sim --corun-slowdown): how much slower one
# engine thread's steps run while the machine's other core runs another. `bench engine -t 1`
# alone and two of them at once, alternately (alone, pair, alone, pair, alone), on the
# stories15m shape in F16 with 64-token prompts, decode at batch 1..32. Each pair's step times
# are compared with the mean of the alone runs either side of it (the machine's speed drifts
# within minutes); the ratio per batch size, prefill included, and their geometric mean.
#   bench/load/corun.sh                      -> results/corun.json
. "$(dirname "$0")/lib.sh"
ensure_model
PAIRS=${PAIRS:-2}

eng() { # $1: output file
    "$SYN" bench engine -m "$MODEL" -t 1 --batch 1,2,4,8,16,32 --prompt 64 --gen 32 \
        --reps "${REPS:-5}" --json >"$1"
}
alone() { log "alone $1"; eng "$WORK/corun_alone_$1.json"; }
pair() {
    log "pair $1"
    eng "$WORK/corun_pair_$1_a.json" &
    eng "$WORK/corun_pair_$1_b.json"
    wait
}

wait_quiet >/dev/null || log "the machine did not get quiet; measuring anyway"
alone 0
for i in $(seq 1 "$PAIRS"); do
    pair "$i"
    alone "$i"
done

python3 - "$WORK" "$PAIRS" "$OUT/corun.json" <<'PY'
import json, math, sys
work, pairs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def times(f):
    # step time per batch size (s per step) and prefill (s per token), keyed alike
    d = json.load(open(f))
    t = {str(x["batch"]): x["batch"] / x["tokens_per_s"] for x in d["decode"]}
    t["prefill"] = 1 / d["prefill_tokens_per_s"]
    return t
rows = []
for i in range(1, pairs + 1):
    before, after = times(f"{work}/corun_alone_{i-1}.json"), times(f"{work}/corun_alone_{i}.json")
    for side in "ab":
        p = times(f"{work}/corun_pair_{i}_{side}.json")
        rows.append({k: p[k] / ((before[k] + after[k]) / 2) for k in p})
keys = list(rows[0])
per_key = {k: sorted(r[k] for r in rows)[len(rows) // 2] for k in keys}
geo = math.exp(sum(math.log(v) for v in per_key.values()) / len(per_key))
res = {"what": "step time with both cores running bench engine -t 1 over the time alone",
       "per_batch_median": per_key, "runs": rows, "corun_slowdown": round(geo, 3)}
json.dump(res, open(out, "w"), indent=1)
print(json.dumps({"corun_slowdown": res["corun_slowdown"], "per_batch_median":
                  {k: round(v, 3) for k, v in per_key.items()}}))
PY
