/*
 * libFuzzer driver for the GGUF reader: every input is parsed as a GGUF file. On success every
 * key/value pair is formatted (cut and in full, into a buffer that may be too small), every typed
 * getter and string-array element is read, and every tensor is touched at its first and last byte
 * and checked to lie inside the input, so that AddressSanitizer catches an index entry or view
 * that points outside it. Small rows of the types we compute with are dequantised. Nothing here
 * may crash, leak or read out of bounds; a rejected input must come with a message.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "synapse/gguf.h"
#include "synapse/tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Sink for the bytes read, so that the reads are not optimised away. */
static volatile uint8_t fuzz_sink;

static void walk_kv(const struct syn_gguf *g, int64_t i)
{
    static char buf[4096];
    static char small[24];
    const char *key = syn_gguf_key(g, i);
    const char *s;
    size_t len;
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f;
    int b;

    if (!key || syn_gguf_find_key(g, key) != i) __builtin_trap();
    size_t n = syn_gguf_format_value(g, i, buf, sizeof buf, 64);
    if (n >= sizeof buf || strlen(buf) != n) __builtin_trap();
    n = syn_gguf_format_value(g, i, small, sizeof small, 0);
    if (n >= sizeof small || strlen(small) != n) __builtin_trap();
    syn_gguf_format_value(g, i, NULL, 0, 0);

    fuzz_sink ^= (uint8_t)(syn_gguf_get_u32(g, key, &u32) + syn_gguf_get_u64(g, key, &u64) +
                           syn_gguf_get_i64(g, key, &i64) + syn_gguf_get_f32(g, key, &f) +
                           syn_gguf_get_bool(g, key, &b));
    if (syn_gguf_get_str(g, key, &s, &len) == 0) {
        if ((const uint8_t *)s + len > (const uint8_t *)syn_gguf_base(g) + syn_gguf_size(g))
            __builtin_trap();
        if (len) fuzz_sink ^= (uint8_t)(s[0] ^ s[len - 1]);
    }
    if (syn_gguf_kv_type(g, i) != SYN_GGUF_ARRAY) return;
    uint64_t an = syn_gguf_arr_n(g, i);
    if (syn_gguf_arr_type(g, i) == SYN_GGUF_STRING) {
        for (uint64_t j = 0; j < an; j++) {
            if (syn_gguf_arr_str(g, i, j, &s, &len) != 0) __builtin_trap();
            if (len) fuzz_sink ^= (uint8_t)(s[0] ^ s[len - 1]);
        }
        if (syn_gguf_arr_str(g, i, an, &s, &len) == 0) __builtin_trap();
    }
    const uint8_t *d = syn_gguf_arr_data(g, i);
    if (d && an) fuzz_sink ^= d[0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct syn_gguf *g = NULL;
    char err[256] = "";
    static float row[1024];

    if (syn_gguf_parse(data, size, &g, err, sizeof err) != 0) {
        if (g || strncmp(err, "gguf: ", 6) != 0) __builtin_trap();
        return 0;
    }
    if (syn_gguf_data_offset(g) > size) __builtin_trap();
    for (int64_t i = 0; i < syn_gguf_n_kv(g); i++) walk_kv(g, i);
    for (int64_t i = 0; i < syn_gguf_n_tensors(g); i++) {
        const struct syn_tensor *t = syn_gguf_tensor(g, i);
        const uint8_t *p = t->data;
        if (t->nbytes == 0 || p < data + syn_gguf_data_offset(g) || p + t->nbytes > data + size)
            __builtin_trap();
        fuzz_sink ^= p[0] ^ p[t->nbytes - 1];
        if (syn_gguf_find_tensor(g, t->name) != t) __builtin_trap();
        if (t->n_dims < 1 || t->n_dims > 4 || !syn_dtype_name(t->type)) __builtin_trap();
        if (t->ne[0] <= sizeof row / sizeof row[0] &&
            syn_dequantize_row(t->type, p, row, t->ne[0]) == 0) {
            uint32_t bits; /* not (uint8_t)row[0]: a NaN or huge value would be UB to convert */
            memcpy(&bits, row, sizeof bits);
            fuzz_sink ^= (uint8_t)bits;
        }
    }
    syn_gguf_free(g);
    return 0;
}
