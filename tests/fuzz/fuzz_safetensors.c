/*
 * libFuzzer driver for the Hugging Face readers: every input is parsed as a safetensors file
 * (and, when it looks like JSON, as a config.json). On success every view is touched at its first
 * and last byte so that AddressSanitizer catches a view that points outside the input, and every
 * lookup path runs. Nothing here may crash, leak or read out of bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "synapse/model.h"
#include "synapse/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Sink for the bytes read, so that the reads are not optimised away. */
static volatile uint8_t fuzz_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct syn_safetensors *st = NULL;
    struct syn_hparams hp;
    char err[256];

    if (syn_safetensors_parse(data, size, &st, err, sizeof err) == 0) {
        for (int64_t i = 0; i < syn_safetensors_n_tensors(st); i++) {
            const struct syn_tensor *t = syn_safetensors_tensor(st, i);
            const struct syn_tensor *g = NULL;
            const uint8_t *p = t->data;
            if (t->nbytes) fuzz_sink ^= p[0] ^ p[t->nbytes - 1];
            if (p < data || p + t->nbytes > data + size) __builtin_trap();
            if (syn_safetensors_find(st, t->name) != t) __builtin_trap();
            if (syn_safetensors_get(st, t->name, &g, err, sizeof err) == 0 && g != t)
                __builtin_trap();
            fuzz_sink ^= (uint8_t)strlen(syn_safetensors_dtype_str(st, i));
        }
        for (int64_t i = 0; i < syn_safetensors_n_meta(st); i++)
            if (!syn_safetensors_meta_get(st, syn_safetensors_meta_key(st, i))) __builtin_trap();
        syn_safetensors_free(st);
    }
    if (size > 0 && data[0] == '{')
        syn_hf_config_parse((const char *)data, size, "fuzz", &hp, err, sizeof err);
    return 0;
}
