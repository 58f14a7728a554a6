#!/bin/sh
# Runs the CUDA backend's kernels (src/engine/cuda/kernels.cu) on the host CUDA emulator in
# tests/cuda/emu/ and checks them against the CPU backend's arithmetic: for machines without a
# GPU, where tests/unit/test_cuda.c skips. kernels.cu is compiled as it is, except that each
# `kernel<<<grid, block, smem, stream>>>(args)` becomes EMU_LAUNCH(kernel, grid, block, smem,
# stream)(args) and the dynamic shared-memory declaration a pointer into the emulator's buffer.
#
#   tests/cuda/run-emu.sh [FILTER]         FILTER: norm, convert, rope, attention, sample
#   EMU_SAN=thread tests/cuda/run-emu.sh   the same under ThreadSanitizer (races on shared memory)
#
# Needs the CPU build's library (make BUILD=... ; default build/libsynapse.a, or $EMU_LIB).
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
g++ -std=c++20 -O1 -g $SAN -D_GNU_SOURCE -I"$OUTDIR" -Itests/cuda/emu -Isrc/engine/cuda -Iinclude \
    -Isrc -o "$OUTDIR/emu_check" tests/cuda/emu/emu_check.cpp tests/cuda/emu/emu_runtime.cpp \
    "$LIB" -lhiredis -levent -ljansson -lcurl -lcrypto -lm -pthread
"$OUTDIR/emu_check" "$@"
