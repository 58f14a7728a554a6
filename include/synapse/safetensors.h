/*
 * Hugging Face model files: the safetensors reader (one file), a model directory (one file or
 * several shards listed by model.safetensors.index.json), and config.json -> struct syn_hparams.
 * This module only maps and describes tensors; it does not convert dtypes or rename tensors to
 * the engine's own names (model.c asks for the HF names listed at the end of this header).
 *
 * The byte-level safetensors format:
 *
 *   u64 N              little-endian length of the header (we refuse N > 100 MB)
 *   N bytes            UTF-8 JSON object, possibly padded with trailing spaces:
 *                        { "__metadata__": { "key": "string value", ... },      (optional)
 *                          "tensor name": { "dtype": "F32",
 *                                           "shape": [R, K],                     (row-major)
 *                                           "data_offsets": [begin, end] }, ... }
 *   the data           tensor bytes; begin/end are relative to the first byte after the header
 *
 * What the reader checks (each failure is SYN_EFORMAT with a message naming what was expected
 * and what was found, never a crash): the header length fits the file, the header is a JSON
 * object with no duplicate keys, every entry has dtype, shape and data_offsets of the right JSON
 * types (other keys are ignored), shape entries are non-negative integers whose product does not
 * overflow, begin <= end <= data size, end - begin == product * element size, and no two
 * tensors overlap (empty tensors occupy no bytes; gaps between tensors are allowed).
 *
 * Dtypes. Every dtype of the safetensors specification is accepted at parse time (BOOL, U8, I8,
 * U16, I16, F16, BF16, U32, I32, F32, F64, U64, I64, F8_E4M3, F8_E5M2, ...) so that a file with
 * an odd extra tensor (an I64 position_ids buffer, F8 scales) still opens; an unknown dtype
 * string is accepted too, its size checked only against the file. The engine computes with F32,
 * F16 and BF16 only: syn_safetensors_get() and syn_hf_dir_get() return SYN_EUNSUPPORTED with a
 * clear message for any other dtype, or for more than 4 dimensions, when that tensor is asked for.
 *
 * Tensor views: struct syn_tensor with ne[] in GGUF order, the reverse of the safetensors shape
 * (shape [R, K] gives ne[0] = K, ne[1] = R); a scalar (shape []) is n_dims 1, ne[0] = 1. type is
 * the enum syn_dtype when one exists (F32, F16, BF16, I8, I16, I32, I64, F64) and -1 otherwise;
 * syn_safetensors_dtype_str() gives the file's own dtype string. data points into the mapping
 * and is NOT necessarily aligned (data starts at 8 + N + begin; writers usually pad N to a
 * multiple of 8, but nothing requires it).
 *
 * Ownership: the handle owns the mapping (or borrows the caller's buffer for _parse) and an index
 * (names, dtype strings, metadata) built at parse time; every pointer returned lives until the
 * handle is freed. A directory handle owns its shard handles.
 */
#ifndef SYNAPSE_SAFETENSORS_H
#define SYNAPSE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "synapse/model.h"
#include "synapse/tensor.h"

#define SYN_SAFETENSORS_MAX_HEADER (100u * 1000u * 1000u) /* bytes of JSON we agree to parse */

/* ---- one safetensors file ---- */

struct syn_safetensors;

/* Maps (read-only, MAP_PRIVATE) and parses the file at path. Returns 0 and sets *out, or
 * SYN_ENOTFOUND (no such file), SYN_EIO (cannot open/map), SYN_EFORMAT (malformed), SYN_ENOMEM,
 * with a message in err that names the file. */
int syn_safetensors_open(const char *path, struct syn_safetensors **out, char *err, size_t errlen);

/* Parses a buffer already in memory (the fuzz target, tests). Not copied: it must outlive the
 * handle. Same returns as _open. */
int syn_safetensors_parse(const void *data, size_t size, struct syn_safetensors **out, char *err,
                          size_t errlen);

/* Unmaps (if mapped) and frees. NULL is fine. */
void syn_safetensors_free(struct syn_safetensors *st);

/* Tensors in file order (ascending data offset). Index out of range -> NULL. */
int64_t syn_safetensors_n_tensors(const struct syn_safetensors *st);
const struct syn_tensor *syn_safetensors_tensor(const struct syn_safetensors *st, int64_t i);
/* The dtype as written in the file ("F32", "I64", ...); NULL if i is out of range. */
const char *syn_safetensors_dtype_str(const struct syn_safetensors *st, int64_t i);

/* Lookup by exact name, O(log n), whatever the dtype: NULL when absent. */
const struct syn_tensor *syn_safetensors_find(const struct syn_safetensors *st, const char *name);

/* Lookup for computing: 0 and *out set, SYN_ENOTFOUND (absent) or SYN_EUNSUPPORTED (dtype other
 * than F32/F16/BF16, or more than 4 dimensions), with a message naming the tensor. */
int syn_safetensors_get(const struct syn_safetensors *st, const char *name,
                        const struct syn_tensor **out, char *err, size_t errlen);

/* The "__metadata__" string map (absent -> 0 entries). Strings are NUL-terminated. */
int64_t syn_safetensors_n_meta(const struct syn_safetensors *st);
const char *syn_safetensors_meta_key(const struct syn_safetensors *st, int64_t i);
const char *syn_safetensors_meta_val(const struct syn_safetensors *st, int64_t i);
const char *syn_safetensors_meta_get(const struct syn_safetensors *st, const char *key);

/* ---- writer (tests, `synapse model` conversions) ----
 * Writes tensors (name, type, n_dims, ne in GGUF order, data, nbytes) as one safetensors file,
 * in the given order, with an 8-byte aligned data section and optional __metadata__ (n_meta
 * key/value pairs; meta may be NULL when n_meta is 0). Supported types: F32, F16, BF16, I8,
 * I16, I32, I64, F64. nbytes must equal the element count times the element size.
 * Returns 0, SYN_EINVAL (bad tensor, duplicate name), SYN_EIO, SYN_ENOMEM. */
int syn_safetensors_write(const char *path, const struct syn_tensor *tensors, int n,
                          const char *const *meta_keys, const char *const *meta_vals, int n_meta,
                          char *err, size_t errlen);

/* ---- a Hugging Face model directory ---- */

struct syn_hf_dir;

/* Opens dir/model.safetensors, or, when dir/model.safetensors.index.json exists, every shard
 * its "weight_map" names (file names inside dir; no '/' allowed). Checks that each tensor the
 * index names is in the shard it names and that no tensor is in two shards. Returns 0 and
 * sets *out, or SYN_ENOTFOUND (neither file exists), SYN_EIO, SYN_EFORMAT, SYN_ENOMEM. */
int syn_hf_dir_open(const char *dir, struct syn_hf_dir **out, char *err, size_t errlen);
void syn_hf_dir_free(struct syn_hf_dir *d);

/* Shards, in the order of their first appearance in the index (one for a single file). */
int syn_hf_dir_n_shards(const struct syn_hf_dir *d);
const struct syn_safetensors *syn_hf_dir_shard(const struct syn_hf_dir *d, int i);
const char *syn_hf_dir_shard_name(const struct syn_hf_dir *d, int i); /* "model-00001-of-..." */

/* Lookup across shards: NULL when absent (any dtype). */
const struct syn_tensor *syn_hf_dir_find_tensor(const struct syn_hf_dir *d, const char *name);
/* As syn_safetensors_get, across shards. */
int syn_hf_dir_get(const struct syn_hf_dir *d, const char *name, const struct syn_tensor **out,
                   char *err, size_t errlen);

/* Reads dir/config.json into *hp (zeroed first). Architectures: LlamaForCausalLM and
 * MistralForCausalLM -> "llama"; Qwen2ForCausalLM -> "qwen2" with qkv_bias = 1 (model_type
 * "llama"/"mistral"/"qwen2" when "architectures" is absent). Defaults: num_key_value_heads =
 * num_attention_heads, head_dim = hidden_size / heads, rope_theta = 10000, rms_norm_eps = 1e-6,
 * max_position_embeddings = 2048, tie_word_embeddings = false. rope_scaling: null, "default",
 * "linear" (factor) or "llama3" (factor, low_freq_factor, high_freq_factor,
 * original_max_position_embeddings). rope_neox is always 1 (HF checkpoints rotate halves).
 * hp->name is the directory's last path component.
 * Returns 0, SYN_ENOTFOUND (no config.json), SYN_EIO, SYN_EFORMAT (bad JSON, missing or invalid
 * field), or SYN_EUNSUPPORTED (an unknown architecture, another rope scaling type, a sliding
 * window smaller than the context, attention/MLP biases on llama, an activation other than
 * silu), each with a message. */
int syn_hf_config_load(const char *dir, struct syn_hparams *hp, char *err, size_t errlen);
/* The same from a JSON text in memory (tests); name is copied into hp->name (may be NULL). */
int syn_hf_config_parse(const char *json, size_t len, const char *name, struct syn_hparams *hp,
                        char *err, size_t errlen);

/* The HF tensor names the engine reads, for i = layer index (tied models have no lm_head):
 *   model.embed_tokens.weight                     [n_vocab, dim]
 *   model.layers.{i}.input_layernorm.weight       [dim]
 *   model.layers.{i}.self_attn.q_proj.weight      [n_head*head_dim, dim]     (+ .bias on qwen2)
 *   model.layers.{i}.self_attn.k_proj.weight      [n_kv_head*head_dim, dim]  (+ .bias on qwen2)
 *   model.layers.{i}.self_attn.v_proj.weight      [n_kv_head*head_dim, dim]  (+ .bias on qwen2)
 *   model.layers.{i}.self_attn.o_proj.weight      [dim, n_head*head_dim]
 *   model.layers.{i}.post_attention_layernorm.weight [dim]
 *   model.layers.{i}.mlp.gate_proj.weight         [ffn_dim, dim]
 *   model.layers.{i}.mlp.up_proj.weight           [ffn_dim, dim]
 *   model.layers.{i}.mlp.down_proj.weight         [dim, ffn_dim]
 *   model.norm.weight                             [dim]
 *   lm_head.weight                                [n_vocab, dim]
 * (shapes as safetensors writes them, row-major; ne[] is the reverse). */

#endif
