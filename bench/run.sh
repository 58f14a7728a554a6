#!/bin/sh
# The benchmarks (`make bench`, which builds first): `synapse bench engine` on random-weight models
# of the stories15m and tinyllama-1.1b shapes in F16 and Q8_0 (and tinyllama in Q4_K_M), then
# `synapse bench worker`, then
# decode after a 512-token context and the attention A/B (bench/attention_ab.c, which this script
# compiles with cc against build/libsynapse.a; the rest it does not build). Writes one JSON object per benchmark to build/bench/*.json and a short summary
# to stdout; progress and the commands run go to stderr. docs/BENCHMARKS.md explains the numbers.
#
# The models are generated into build/bench-models/ when missing (the 1.1B ones take a few
# seconds each and 2.2 GB / 1.2 GB / 0.7 GB of disk). Each benchmark reports ratios measured within one
# run; the machines are shared, so the load average is recorded with every result.
#
# Environment: SYNAPSE (binary, default ./synapse), BENCH_OUT (default build/bench),
# BENCH_MODELS (default build/bench-models), BENCH_QUICK=1 (fewer reps and tokens: a smoke test).
set -eu

cd "$(dirname "$0")/.."
SYNAPSE=${SYNAPSE:-./synapse}
OUT=${BENCH_OUT:-build/bench}
MODELS=${BENCH_MODELS:-build/bench-models}
QUICK=${BENCH_QUICK:-0}

if [ ! -x "$SYNAPSE" ]; then
    echo "bench: $SYNAPSE not found; run 'make' first (make bench does)" >&2
    exit 1
fi
command -v redis-server >/dev/null 2>&1 || {
    echo "bench: redis-server is needed for 'bench worker' (scripts/install-deps.sh)" >&2
    exit 1
}
mkdir -p "$OUT" "$MODELS"
# Run a private copy: the working tree is shared, and a rebuild in the middle of the run would
# otherwise mix two binaries in one set of results.
cp "$SYNAPSE" "$OUT/synapse.bin"
SYNAPSE="$OUT/synapse.bin"
COMMIT=$(git describe --always --dirty 2>/dev/null || echo unknown)

log() { echo "bench: $*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# The random models, generated once.
for spec in stories15m:f16 stories15m:q8_0 tinyllama-1.1b:f16 tinyllama-1.1b:q8_0 tinyllama-1.1b:q4_K_M; do
    shape=${spec%%:*}
    dtype=${spec#*:}
    f="$MODELS/$shape-$dtype.gguf"
    if [ ! -s "$f" ]; then
        log "generating $f"
        "$SYNAPSE" model random --shape "$shape" --dtype "$dtype" -o "$f.part" >&2
        mv "$f.part" "$f"
    fi
done

if [ "$QUICK" = 1 ]; then
    SMALL_ARGS="--reps 1 --gen 16 --prompt 32"
    BIG_ARGS="--reps 1 --gen 4 --prompt 16"
    WORKER_ARGS="--reps 1 --jobs 96 --batch-tokens 32"
else
    # the 1.1B shape: 2 reps of 16 decode steps per batch size keep each model near a minute here
    SMALL_ARGS="--reps 3 --gen 64 --prompt 128"
    BIG_ARGS="--reps 2 --gen 16 --prompt 128"
    WORKER_ARGS=""
fi

# Runs one benchmark: NAME then the command; JSON to $OUT/NAME.json, with the load average
# before the run added as "loadavg_before" (the command's own object, one line, closed by '}').
run() {
    name=$1
    shift
    la=$(loadavg)
    log "$name (load average $la): $*"
    t0=$(date +%s)
    if ! "$@" --json >"$OUT/$name.json.part"; then
        log "$name failed"
        rm -f "$OUT/$name.json.part"
        return 1
    fi
    sed "s/}\$/,\"loadavg_before\":\"$la\",\"seconds\":$(($(date +%s) - t0)),\"commit\":\"$COMMIT\"}/" \
        "$OUT/$name.json.part" >"$OUT/$name.json"
    rm -f "$OUT/$name.json.part"
}

status=0
run engine-stories15m-f16 "$SYNAPSE" bench engine -m "$MODELS/stories15m-f16.gguf" \
    --batch 1,4,16,64 $SMALL_ARGS || status=1
run engine-stories15m-q8_0 "$SYNAPSE" bench engine -m "$MODELS/stories15m-q8_0.gguf" \
    --batch 1,4,16,64 $SMALL_ARGS || status=1
run engine-tinyllama-1.1b-f16 "$SYNAPSE" bench engine -m "$MODELS/tinyllama-1.1b-f16.gguf" \
    --batch 1,4,16 $BIG_ARGS || status=1
run engine-tinyllama-1.1b-q8_0 "$SYNAPSE" bench engine -m "$MODELS/tinyllama-1.1b-q8_0.gguf" \
    --batch 1,4,16 $BIG_ARGS || status=1
run engine-tinyllama-1.1b-q4_K_M "$SYNAPSE" bench engine -m "$MODELS/tinyllama-1.1b-q4_K_M.gguf" \
    --batch 1,4,16 $BIG_ARGS || status=1
run worker "$SYNAPSE" bench worker --batch-model "$MODELS/stories15m-f16.gguf" $WORKER_ARGS ||
    status=1
# Decode after a long context, where attention counts, and the AVX-512 attention path against
# the generic one in one process (bench/attention_ab.c, built here against build/libsynapse.a).
run engine-stories15m-f16-ctx512 "$SYNAPSE" bench engine -m "$MODELS/stories15m-f16.gguf" \
    --batch 1,16 --context 512 $SMALL_ARGS || status=1
if cc -O2 -Iinclude -Isrc -pthread bench/attention_ab.c build/libsynapse.a -lhiredis -levent \
    -ljansson -lcurl -lssl -lcrypto -lm -o "$OUT/attention_ab"; then
    : >"$OUT/attention.txt"
    for spec in stories15m-f16:16:512 tinyllama-1.1b-q8_0:1:1024; do
        m=${spec%%:*} rest=${spec#*:}
        log "attention A/B on $m, batch ${rest%%:*}, context ${rest#*:} (load average $(loadavg))"
        if r=$("$OUT/attention_ab" "$MODELS/$m.gguf" "${rest%%:*}" "${rest#*:}" 0 \
            "$([ "$QUICK" = 1 ] && echo 2 || echo 6)"); then
            echo "$m $r [load avg $(loadavg | cut -d' ' -f1)]" >>"$OUT/attention.txt"
        else
            status=1
        fi
    done
    rm -f "$OUT/attention_ab"
else
    log "bench/attention_ab.c did not build"
    status=1
fi

# The summary: a few numbers per file, read with python3's json module when it is there.
rm -f "$OUT/synapse.bin"
echo "results in $OUT/ (commit $COMMIT, load average now $(loadavg))"
if command -v python3 >/dev/null 2>&1; then
    python3 - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
for m in ("stories15m-f16", "stories15m-q8_0", "tinyllama-1.1b-f16", "tinyllama-1.1b-q8_0",
          "tinyllama-1.1b-q4_K_M"):
    j = load("engine-" + m)
    if not j:
        print(f"{m:20s} (no result)")
        continue
    dec = {d["batch"]: d["tokens_per_s"] for d in j["decode"]}
    b1 = dec.get(1, 0)
    gains = " ".join(f"b{b} {v / b1:.2f}x" for b, v in sorted(dec.items()) if b != 1 and b1)
    print(f"{m:20s} {j['membw_gbs']:.1f} GB/s  b1 {b1:.1f} tok/s "
          f"({100 * j.get('batch1_floor_ratio', 0):.0f}% of floor)  {gains}  "
          f"prefill {j['prefill_tokens_per_s']:.0f} tok/s  load+first {j['first_token_s']:.3f} s"
          f"  [load avg {j['loadavg_before'].split()[0]}]")
w = load("worker")
if w:
    h, b = w["hop"], w["batching"]
    v = lambda x: "n/a" if x is None else ("met" if x else "NOT met")
    print(f"queue hop            step p99 {h['engine_step_ms_p99']:.2f} ms, worker gap p99 "
          f"{h['worker_gap_ms_p99']:.2f} ms, added p50 {h['added_ms_p50']:.2f} / p99 "
          f"{h['added_ms_p99']:.2f} ms (target < 1 ms: {v(h['target_met'])}); "
          f"{h['worker_jobs_per_s']:.0f} jobs/s, 1-token {h['short_worker_jobs_per_s']:.0f} jobs/s")
    print(f"batching gain        engine {b['engine_gain']:.2f}x, worker {b['worker_gain']:.2f}x "
          f"= {100 * b['gain_ratio']:.0f}% (target >= 90%: {v(b['target_met'])})"
          f"  [load avg {w['loadavg_start'][0]:.2f}]")
else:
    print("worker               (no result)")
j = load("engine-stories15m-f16-ctx512")
if j:
    dec = {d["batch"]: d["tokens_per_s"] for d in j["decode"]}
    print(f"stories15m-f16 @512  b1 {dec.get(1, 0):.1f} tok/s, b16 {dec.get(16, 0):.1f} tok/s "
          f"(decode after 512 tokens of context)  [load avg {j['loadavg_before'].split()[0]}]")
try:
    with open(os.path.join(out, "attention.txt")) as f:
        for line in f:
            print("attention A/B        " + line.rstrip())
except OSError:
    pass
EOF
else
    for f in "$OUT"/*.json; do echo "$f: $(cat "$f")"; done
fi
exit $status
