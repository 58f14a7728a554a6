#!/bin/sh
# Runs the CUDA backend's kernels (src/engine/cuda/kernels.cu) on the host CUDA emulator in
# tests/cuda/emu/ and checks them against the CPU backend's arithmetic: for machines without a
# GPU, where tests/unit/test_cuda.c skips. CUDA threads are fibers on one OS thread (barriers switch between
# them; a barrier some thread never reaches aborts as a deadlock). kernels.cu is compiled as it is, except that each
# `kernel<<<grid, block, smem, stream>>>(args)` becomes EMU_LAUNCH(kernel, grid, block, smem,
# stream)(args) and the dynamic shared-memory declaration a pointer into the emulator's buffer.
#
#   tests/cuda/run-emu.sh [FILTER]         FILTER: norm, convert, rope, attention, sample
#   tests/cuda/run-emu.sh engine [MODEL:NMSE_TOL ...]
#                                          the whole backend (backend.cu too, on an emulated
#                                          runtime and cuBLAS) through the engine API against the
#                                          CPU backend; default models: stories260K and random
#                                          f32, bf16, q8_0 and q4_K_M ones
#   EMU_SAN=undefined tests/cuda/run-emu.sh   the same under UBSan
#
# Needs the CPU build's library and binary (default build/libsynapse.a and ./synapse, or $EMU_LIB
# and $EMU_SYNAPSE) and the shared data (../shared or $SYNAPSE_SHARED).
set -eu
cd "$(dirname "$0")/../.."
OUTDIR=${EMU_BUILD:-build/emu}
LIB=${EMU_LIB:-build/libsynapse.a}
mkdir -p "$OUTDIR"
python3 - src/engine/cuda/kernels.cu "$OUTDIR/kernels_emu.cu" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
out, n = re.subn(r"(\w+)\s*<<<(.*?)>>>", lambda m: "EMU_LAUNCH(%s, %s)" % (m.group(1), m.group(2)),
                 src, flags=re.S)
out, k = re.subn(r"extern __shared__ float (\w+)\[\];", r"float *\1 = emu_dynamic_smem();", out)
if n == 0 or k == 0:
    sys.exit("run-emu: found %d launches and %d dynamic shared arrays in %s" % (n, k, sys.argv[1]))
open(sys.argv[2], "w").write('#line 1 "%s"\n' % sys.argv[1] + out)
PY
SAN=""
if [ -n "${EMU_SAN:-}" ]; then SAN="-fsanitize=$EMU_SAN"; fi
CXX="g++ -std=c++20 -O1 -g $SAN -D_GNU_SOURCE -I$OUTDIR -Itests/cuda/emu -Isrc/engine/cuda -Iinclude -Isrc"
LIBS="$LIB -lhiredis -levent -ljansson -lcurl -lcrypto -lm -pthread"
EMU="tests/cuda/emu/emu_runtime.cpp tests/cuda/emu/emu_api.cpp"

if [ "${1:-}" != engine ]; then
    $CXX -o "$OUTDIR/emu_check" tests/cuda/emu/emu_check.cpp $EMU $LIBS
    exec "$OUTDIR/emu_check" "$@"
fi
shift
# engine.c as the CUDA=1 build compiles it (it picks the backend), the backend's three files
gcc -std=c11 -O1 -g $SAN -D_GNU_SOURCE -DSYN_HAVE_CUDA -Iinclude -Isrc -c src/engine/engine.c \
    -o "$OUTDIR/engine.o"
$CXX -x c++ -c "$OUTDIR/kernels_emu.cu" -o "$OUTDIR/kernels.o"
$CXX -x c++ -c src/engine/cuda/backend.cu -o "$OUTDIR/backend.o"
$CXX -o "$OUTDIR/emu_engine" tests/cuda/emu/emu_engine.cpp "$OUTDIR/engine.o" "$OUTDIR/kernels.o" \
    "$OUTDIR/backend.o" $EMU $LIBS
if [ $# -eq 0 ]; then
    SYN=${EMU_SYNAPSE:-./synapse}
    SHARED=${SYNAPSE_SHARED:-../shared}
    M=$OUTDIR/models
    mkdir -p "$M"
    "$SYN" model random --dim 64 --layers 2 --heads 8 --kv-heads 2 --ffn 160 --vocab 300 \
        --rope-theta 500000 --llama3-rope --dtype f32 --seed 11 -o "$M/f32.gguf" >/dev/null
    "$SYN" model random --dim 96 --layers 2 --heads 4 --head-dim 24 --ffn 200 --vocab 301 --tied \
        --dtype bf16 --seed 12 -o "$M/bf16.gguf" >/dev/null
    "$SYN" model random --dim 64 --layers 2 --heads 4 --kv-heads 1 --ffn 128 --vocab 320 \
        --dtype q8_0 --seed 15 -o "$M/q8.gguf" >/dev/null
    "$SYN" model random --dim 96 --layers 3 --heads 3 --kv-heads 1 --ffn 256 --vocab 300 \
        --dtype q4_K_M --seed 16 -o "$M/q4km.gguf" >/dev/null
    set -- "$SHARED/models/stories260K.gguf:1e-8" "$M/f32.gguf:1e-8" "$M/bf16.gguf:1e-3" \
        "$M/q8.gguf:2e-3" "$M/q4km.gguf:2e-3"
fi
exec "$OUTDIR/emu_engine" "$@"
