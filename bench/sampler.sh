#!/bin/sh
# The sampler's micro-benchmark (bench/sampler.c): µs per row of logits, by mode.
#
#   bench/sampler.sh [--old REV] [ARGS...]
#
# Links bench/sampler.c against $LIB (default build/libsynapse.a: run `make` first). With
# --old REV it also compiles src/engine/sampler.c as it was at REV, its public symbols renamed
# old_*, so that both are timed in one run and their draws compared. ARGS go to the program
# (--vocab N, --reps R, --draws D, --check N). Everything is built in a temporary directory.
set -eu
cd "$(dirname "$0")/.."
LIB=${LIB:-build/libsynapse.a}
CC=${CC:-gcc}
FLAGS="-std=c11 -O2 -g -Iinclude -Isrc -D_GNU_SOURCE -fno-strict-aliasing"
[ -f "$LIB" ] || { echo "bench/sampler.sh: $LIB not found: run make first" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
OLD=""
if [ "${1:-}" = --old ]; then
    git show "$2:src/engine/sampler.c" >"$WORK/old_sampler.c"
    RENAME=""
    for f in syn_sampling_default_params syn_sampling_validate syn_sampler_new syn_sampler_free \
        syn_sampler_reset syn_sampler_accept syn_sampler_sample syn_sampler_device_ok \
        syn_sampler_device_spec; do
        RENAME="$RENAME -D$f=old_$f"
    done
    # shellcheck disable=SC2086
    $CC $FLAGS $RENAME -c "$WORK/old_sampler.c" -o "$WORK/old_sampler.o"
    OLD="-DSAMPLER_OLD $WORK/old_sampler.o"
    echo "old: src/engine/sampler.c at $(git rev-parse --short "$2"); new: $LIB" >&2
    shift 2
fi
# shellcheck disable=SC2086
$CC $FLAGS -o "$WORK/sampler" bench/sampler.c $OLD "$LIB" -lm
"$WORK/sampler" "$@"
