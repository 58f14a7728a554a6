#!/bin/sh
# Packs what scripts/gpu-check.sh needs on a GPU machine that this repository's checkout does not
# carry by itself, into .gpu-bundle/ (ignored through .git/info/exclude; name it in the device
# tool's `carry`):
#
#   include/  the headers of hiredis, libevent, jansson, libcurl and OpenSSL as this machine has
#             them (the GPU image is an ML image, without these -dev packages)
#   lib/      those libraries and every shared library they pull in, except glibc, the C++
#             runtime and CUDA's, with the unversioned names the linker wants
#   shared/   the shared test data the CUDA checks read (stories260K, the Llama vocab that
#             `model random` copies for the tinyllama shape); ../shared does not travel
#
# gpu-check.sh uses include/ and lib/ only when the machine's compiler cannot find hiredis, and
# then links with an rpath into lib/, so nothing else on the machine (python's ssl) sees them.
# Built from Debian 12; fine on any x86-64 Linux whose glibc is at least as new (2.36).
#
#   scripts/gpu-bundle.sh            (then carry .gpu-bundle)
set -eu
cd "$(dirname "$0")/.."
B=.gpu-bundle
SHARED=${SYNAPSE_SHARED:-../shared}
grep -qx '/.gpu-bundle/' .git/info/exclude 2>/dev/null || echo '/.gpu-bundle/' >>.git/info/exclude
rm -rf "$B"
mkdir -p "$B/include" "$B/lib" "$B/shared/models" "$B/shared/testdata/tokenizer"

# headers: the directories and files the sources include, multiarch parts folded in
ARCH=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
for d in hiredis event2 openssl; do cp -rL "/usr/include/$d" "$B/include/"; done
cp -L /usr/include/jansson.h /usr/include/jansson_config.h "$B/include/"
for d in curl openssl event2; do
    if [ -d "/usr/include/$ARCH/$d" ]; then
        mkdir -p "$B/include/$d"
        cp -rL "/usr/include/$ARCH/$d/." "$B/include/$d/"
    fi
done
[ -d "$B/include/curl" ] || cp -rL /usr/include/curl "$B/include/"

# libraries: the link names, then the runtime closure of each
SKIP='^(libc|libm|libpthread|libdl|librt|libresolv|libutil|libstdc\+\+|libgcc_s|ld-linux.*|linux-vdso|libcuda.*|libcublas.*|libcudart.*)\.so'
for name in hiredis event jansson curl crypto; do
    so=$(gcc -print-file-name="lib$name.so")
    real=$(readlink -f "$so")
    soname=$(objdump -p "$real" | awk '/SONAME/ {print $2}')
    cp -L "$real" "$B/lib/$soname"
    ln -sf "$soname" "$B/lib/lib$name.so"
    ldd "$real" | awk '$3 ~ /^\// {print $1, $3}' | while read -r lib path; do
        if ! echo "$lib" | grep -Eq "$SKIP"; then cp -Ln "$path" "$B/lib/$lib" 2>/dev/null || true; fi
    done
done

# test data
cp "$SHARED/models/stories260K.gguf" "$B/shared/models/"
cp "$SHARED/testdata/tokenizer/ggml-vocab-llama-spm.gguf" "$B/shared/testdata/tokenizer/"

du -sh "$B" "$B/include" "$B/lib" "$B/shared"
echo "gpu-bundle: wrote $B; carry it: run(carry=[\"$B\"], command=\"scripts/gpu-check.sh\")"
