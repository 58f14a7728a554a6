#!/bin/bash
# Every check of the CUDA backend that needs a GPU, in one call on the GPU machine (16 cores, an
# H100 or H200, CUDA 13, nvidia-smi, python3 with torch and transformers), within about 8 minutes:
#
#   1 env      the GPU, driver, nvcc, gcc, glibc, torch and transformers versions
#   2 deps     hiredis/libevent/jansson/curl/openssl headers: the machine's, else .gpu-bundle's
#   3 build    make CUDA=1 -j16 into build/cuda (sm_90a + compute_80 PTX)
#   4 smoke    stories260K greedy on --backend cuda equals --backend cpu, with no CPU fallback
#   5 tests    the agreement tests (tests/unit/test_cuda.c): per-op NMSE, end to end, graphs,
#              greedy; on this machine a SKIPPED test is a failure (the GPU was not usable)
#   6 hf       scripts/hf_compare.py: transformers vs our CPU and CUDA backends
#   7 bench    random-weight tinyllama-1.1b in BF16: decode at batch 1 and 128, and generation
#              with a 128-token prompt and 128 new tokens (prefill included), against the floor
#
# Every stage runs under its own time limit and a deadline for the whole script, so that the
# summary table, printed last, always comes out; a failing stage is reported loudly with the end
# of its log, and the stages that do not depend on it still run. Logs go to $OUT when set (the
# device tool's folder that comes back), else build/gpu-check/. Exit status: 0 when every stage
# passed, 1 otherwise.
#
# On a machine without the C libraries' headers, run scripts/gpu-bundle.sh beforehand where they
# are and carry .gpu-bundle (it also brings the shared test data, since ../shared does not travel):
#   device run: carry [".gpu-bundle"], command "scripts/gpu-check.sh", timeout_s 600
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RES=${OUT:-$ROOT/build/gpu-check}
mkdir -p "$RES"
JOBS=${JOBS:-16}
DEADLINE=$(($(date +%s) + ${GPU_CHECK_SECONDS:-540}))
BIN=build/cuda/synapse
TESTS=build/cuda/synapse-tests
BUNDLE=$ROOT/.gpu-bundle
MODEL_DIR=${BENCH_MODELS:-build/bench-models}
BENCH_MODEL=${GPU_CHECK_BENCH_MODEL:-$MODEL_DIR/tinyllama-1.1b-bf16.gguf} # override: dry runs
export PYTHONUNBUFFERED=1

if [ -n "${SYNAPSE_SHARED:-}" ]; then
    SHARED=$SYNAPSE_SHARED
elif [ -f ../shared/models/stories260K.gguf ]; then
    SHARED=$(cd ../shared && pwd)
else
    SHARED=$BUNDLE/shared
fi
export SYNAPSE_SHARED=$SHARED

NAMES=()
RESULTS=()
TIMES=()
DETAILS=()
FAILED=0

say() { printf '%s\n' "$*"; }

# record NAME RESULT SECONDS DETAIL
record() {
    NAMES+=("$1")
    RESULTS+=("$2")
    TIMES+=("$3")
    DETAILS+=("$4")
    if [ "$2" != ok ]; then FAILED=1; fi
}

# run_stage NAME LIMIT_S LOG CMD...: runs CMD with its output in LOG, under the smaller of
# LIMIT_S and what is left before the deadline. Sets STAGE_RC and STAGE_S.
run_stage() {
    local name=$1 limit=$2 log=$3
    shift 3
    local left=$((DEADLINE - $(date +%s)))
    if [ "$left" -lt "$limit" ]; then limit=$left; fi
    say "== $name (limit ${limit}s, log $log)"
    if [ "$limit" -le 5 ]; then
        STAGE_RC=124
        STAGE_S=0
        say "   !! no time left for $name"
        return
    fi
    local t0
    t0=$(date +%s)
    timeout -k 10 "$limit" "$@" >>"$log" 2>&1
    STAGE_RC=$?
    STAGE_S=$(($(date +%s) - t0))
    if [ "$STAGE_RC" -eq 124 ] || [ "$STAGE_RC" -eq 137 ]; then
        say "   !! $name TIMED OUT after ${limit}s"
    fi
}

# fail_loudly NAME LOG WHY
fail_loudly() {
    say ""
    say "!!!!!!!! $1 FAILED: $3"
    say "!!!!!!!! last lines of $2:"
    tail -n 25 "$2" | sed 's/^/   | /'
    say ""
}

# ---- 1 env ----
ENVLOG=$RES/env.log
: >"$ENVLOG"
{
    date -u
    git log -1 --format='commit %h %s' 2>/dev/null || true
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem \
        --format=csv 2>&1
    nvcc --version 2>&1 | tail -n 2 || /usr/local/cuda/bin/nvcc --version 2>&1 | tail -n 2
    gcc --version 2>&1 | head -n 1
    ldd --version 2>&1 | head -n 1
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda",
torch.version.cuda, "transformers", transformers.__version__)' 2>&1
    nproc
} >>"$ENVLOG" 2>&1
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
if [ -z "$GPU" ]; then
    fail_loudly env "$ENVLOG" "nvidia-smi shows no GPU"
    record env FAIL 0 "no GPU visible"
else
    record env ok 0 "$GPU"
fi
say "== env: ${GPU:-no GPU}; shared data from $SHARED"

# ---- 2 deps ----
MAKE_EXTRA=()
have_headers() {
    printf '#include <hiredis/hiredis.h>\n#include <event2/event.h>\n#include <jansson.h>\n#include <curl/curl.h>\n#include <openssl/evp.h>\n' |
        gcc -E -x c - >/dev/null 2>&1
}
if have_headers; then
    record deps ok 0 "system headers"
elif [ -d "$BUNDLE/include" ]; then
    export C_INCLUDE_PATH=$BUNDLE/include
    MAKE_EXTRA=("LDFLAGS=-pthread -L$BUNDLE/lib -Wl,--disable-new-dtags,-rpath,$BUNDLE/lib")
    if have_headers; then
        record deps ok 0 ".gpu-bundle (headers and libraries carried)"
    else
        record deps FAIL 0 ".gpu-bundle headers do not compile here"
    fi
else
    say "!!!!!!!! deps FAILED: no hiredis/libevent/jansson/curl/openssl headers here and no"
    say "!!!!!!!! .gpu-bundle: run scripts/gpu-bundle.sh where they are and carry .gpu-bundle"
    record deps FAIL 0 "headers missing, no .gpu-bundle carried"
fi

# ---- 3 build ----
BUILDLOG=$RES/build.log
: >"$BUILDLOG"
run_stage build 300 "$BUILDLOG" make CUDA=1 -j"$JOBS" BUILD=build/cuda BIN="$BIN" "${MAKE_EXTRA[@]}" all
BUILT=0
if [ "$STAGE_RC" -ne 0 ]; then
    fail_loudly build "$BUILDLOG" "make CUDA=1 exited $STAGE_RC"
    record build FAIL "$STAGE_S" "make exited $STAGE_RC"
elif ldd "$BIN" | grep -q 'not found'; then
    ldd "$BIN" >>"$BUILDLOG"
    fail_loudly build "$BUILDLOG" "$BIN has unresolved shared libraries"
    record build FAIL "$STAGE_S" "unresolved libraries"
else
    BUILT=1
    WARN=$(grep -c -i 'warning' "$BUILDLOG" || true)
    record build ok "$STAGE_S" "$WARN warning lines"
fi

# ---- 4 smoke ----
if [ "$BUILT" = 1 ]; then
    SMOKELOG=$RES/smoke.log
    : >"$SMOKELOG"
    M=$SHARED/models/stories260K.gguf
    run_stage smoke 60 "$SMOKELOG" bash -c "
        set -e
        '$BIN' generate -m '$M' -n 60 --temp 0 --backend cpu >'$RES/.cpu.txt' 2>/dev/null
        SYNAPSE_LOG=info '$BIN' generate -m '$M' -n 60 --temp 0 --backend cuda >'$RES/.gpu.txt'
        echo '-- cpu:'; cat '$RES/.cpu.txt'; echo '-- cuda:'; cat '$RES/.gpu.txt'"
    if [ "$STAGE_RC" -ne 0 ]; then
        fail_loudly smoke "$SMOKELOG" "generate exited $STAGE_RC"
        record smoke FAIL "$STAGE_S" "generate exited $STAGE_RC"
    elif grep -q 'using the CPU backend' "$SMOKELOG"; then
        fail_loudly smoke "$SMOKELOG" "--backend cuda fell back to the CPU"
        record smoke FAIL "$STAGE_S" "fell back to the CPU"
    elif ! cmp -s "$RES/.cpu.txt" "$RES/.gpu.txt"; then
        fail_loudly smoke "$SMOKELOG" "greedy text differs between cpu and cuda"
        record smoke FAIL "$STAGE_S" "cuda text != cpu text"
    else
        record smoke ok "$STAGE_S" "60 greedy tokens equal"
    fi
    rm -f "$RES/.cpu.txt" "$RES/.gpu.txt"
else
    record smoke "not run" 0 "no build"
fi

# ---- 5 tests ----
if [ "$BUILT" = 1 ]; then
    TESTLOG=$RES/tests.log
    : >"$TESTLOG"
    run_stage tests 240 "$TESTLOG" env SYNAPSE_BIN="$ROOT/$BIN" SYNAPSE_SHARED="$SHARED" \
        SYNAPSE_ROOT="$ROOT" "$TESTS" cuda
    LINE=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$TESTLOG" | tail -n 1)
    NMSE=$(grep -c 'nmse' "$TESTLOG" || true)
    if [ "$STAGE_RC" -ne 0 ] || [ -z "$LINE" ]; then
        fail_loudly tests "$TESTLOG" "the test runner exited $STAGE_RC"
        record tests FAIL "$STAGE_S" "${LINE:-no summary} (exit $STAGE_RC)"
    elif echo "$LINE" | grep -q 'skipped'; then
        fail_loudly tests "$TESTLOG" "tests were SKIPPED on a GPU machine"
        record tests FAIL "$STAGE_S" "$LINE"
    else
        record tests ok "$STAGE_S" "$LINE; $NMSE nmse lines in the log"
    fi
else
    record tests "not run" 0 "no build"
fi

# ---- 6 hf ----
if [ "$BUILT" = 1 ]; then
    HFLOG=$RES/hf.log
    : >"$HFLOG"
    rm -rf /tmp/synapse-hf-compare
    run_stage hf 150 "$HFLOG" python3 scripts/hf_compare.py --synapse "$ROOT/$BIN" \
        --backends cpu,cuda --out /tmp/synapse-hf-compare
    cat /tmp/synapse-hf-compare/hf_compare.log >>"$HFLOG" 2>/dev/null || true
    OKS=$(grep -c ' ok  ' "$HFLOG" || true)
    BAD=$(grep -c ' FAIL ' "$HFLOG" || true)
    if [ "$STAGE_RC" -ne 0 ] || grep -q 'SKIPPED' "$HFLOG"; then
        fail_loudly hf "$HFLOG" "hf_compare.py exited $STAGE_RC (or skipped)"
        record hf FAIL "$STAGE_S" "$OKS within tolerance, $BAD over"
    else
        record hf ok "$STAGE_S" "$OKS (case, backend) pairs within tolerance"
    fi
else
    record hf "not run" 0 "no build"
fi

# ---- 7 bench ----
BENCHJSON=$RES/bench.json
if [ "$BUILT" = 1 ]; then
    BENCHLOG=$RES/bench.log
    : >"$BENCHLOG"
    mkdir -p "$MODEL_DIR"
    if [ ! -s "$BENCH_MODEL" ]; then
        run_stage bench-model 120 "$BENCHLOG" bash -c "'$BIN' model random --shape tinyllama-1.1b \
            --dtype bf16 -o '$BENCH_MODEL.part' && mv '$BENCH_MODEL.part' '$BENCH_MODEL'"
    fi
    run_stage bench 200 "$BENCHLOG" bash -c "SYNAPSE_LOG=info '$BIN' bench engine \
        -m '$BENCH_MODEL' --backend cuda --batch 1,128 --prompt 128 --gen 128 --reps 3 --e2e \
        --json >'$BENCHJSON'"
    if [ "$STAGE_RC" -ne 0 ] || [ ! -s "$BENCHJSON" ]; then
        fail_loudly bench "$BENCHLOG" "bench engine exited $STAGE_RC"
        record bench FAIL "$STAGE_S" "bench exited $STAGE_RC"
    elif grep -q 'using the CPU backend' "$BENCHLOG"; then
        fail_loudly bench "$BENCHLOG" "the benchmark fell back to the CPU"
        record bench FAIL "$STAGE_S" "fell back to the CPU"
    else
        record bench ok "$STAGE_S" "$(grep -o 'weights: .*' "$BENCHLOG" | head -n 1)"
    fi
else
    record bench "not run" 0 "no build"
fi

# ---- summary, last ----
{
    say ""
    say "==================== gpu-check summary ===================="
    say "gpu: ${GPU:-none}   commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    printf '%-8s %-8s %6s  %s\n' stage result time detail
    for i in "${!NAMES[@]}"; do
        printf '%-8s %-8s %5ss  %s\n' "${NAMES[$i]}" "${RESULTS[$i]}" "${TIMES[$i]}" "${DETAILS[$i]}"
    done
    grep -E '^(f32|bf16)' "$RES/hf.log" 2>/dev/null | sed 's/^/hf  /' || true
    if [ -s "$BENCHJSON" ]; then
        python3 - "$BENCHJSON" <<'EOF' || cat "$BENCHJSON"
import json, sys
b = json.load(open(sys.argv[1]))
dec = {d["batch"]: d["tokens_per_s"] for d in b["decode"]}
gen = {d["batch"]: d["tokens_per_s"] for d in b.get("generate", [])}
print("bench: %s on %s, weights %.2f GB, bandwidth %.0f GB/s -> floor %.0f tokens/s at batch 1"
      % (b["backend"], b["device"], b["weight_bytes"] / 1e9, b["membw_gbs"],
         b["floor_tokens_per_s"]))
print("bench: load %.2f s, prefill %.0f tokens/s (%d tokens)"
      % (b["load_s"], b["prefill_tokens_per_s"], b["prompt_tokens"]))
for batch, target in ((1, 800), (128, 30000)):
    print("bench: batch %-3d decode %9.0f tokens/s   generate (prompt 128 + 128 new) %9.0f "
          "tokens/s   target %d: %s" % (batch, dec.get(batch, 0), gen.get(batch, 0), target,
                                        "met" if gen.get(batch, 0) >= target else "NOT met"))
if 1 in dec:
    print("bench: batch 1 decode at %.0f%% of the floor" % (100 * dec[1] / b["floor_tokens_per_s"]))
EOF
    fi
    if [ "$FAILED" = 0 ]; then say "gpu-check: ALL STAGES PASSED"; else say "gpu-check: FAILED (see above and $RES)"; fi
} | tee "$RES/summary.txt"
exit "$FAILED"
