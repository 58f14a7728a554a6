#!/usr/bin/python3
"""Writes a small random-weight Llama model as a Hugging Face directory, for tests.

  /usr/bin/python3 scripts/make_hf_random.py DIR --dim 64 --layers 2 --heads 4 [--kv-heads 2]
      [--ffn 96] [--vocab 300] [--head-dim N] [--dtype f32|bf16] [--tied] [--seed S]
      [--shards N] [--rope-llama3]

DIR gets config.json (LlamaForCausalLM), the weights under Hugging Face's tensor names as
model.safetensors (or N shards with model.safetensors.index.json), and a tokenizer: a minimal
byte-level BPE tokenizer.json (the 256 GPT-2 byte symbols, then merges of letter pairs, then
<|begin_of_text|> and <|end_of_text|> as added tokens) whose size is exactly --vocab, with a
tokenizer_config.json naming BOS and EOS. Weights are uniform with variance 1/K (K = a matrix's
input size) so activations stay O(1), norm weights 1 +- 0.1; NumPy's PCG64 seeded by --seed.

Pairs with scripts/ref_llama.py: the engine and the reference both load the directory.
"""

import argparse
import json
import os

import numpy as np

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>"]


def byte_symbols():
    """GPT-2's byte-level alphabet: printable bytes stand for themselves, the other 68 bytes
    are moved to code points 256 and up, in byte order."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def tokenizer_json(vocab_size):
    n_merges = vocab_size - 256 - len(SPECIALS)
    if n_merges < 0:
        raise SystemExit("--vocab must be at least %d" % (256 + len(SPECIALS)))
    syms = byte_symbols()
    vocab = {s: i for i, s in enumerate(syms)}
    merges = []
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    # "Ġ" (the byte-level space) + a letter first, then letter pairs, then pairs of merged
    # tokens: every merge's parts exist before it, as BPE requires.
    pairs = [("\u0120", c) for c in letters] + [(a, b) for a in letters for b in letters]
    i = 0
    while len(merges) < n_merges:
        if i < len(pairs):
            a, b = pairs[i]
        else:  # a merge of two earlier merges, enough for any vocab size
            j = i - len(pairs)
            a, b = merges[j % len(merges)][0] + merges[j % len(merges)][1], merges[j // len(merges)][1]
        i += 1
        if a + b in vocab:
            continue
        vocab[a + b] = len(vocab)
        merges.append((a, b))
    added = []
    for s in SPECIALS:
        added.append(dict(id=len(vocab), content=s, single_word=False, lstrip=False,
                          rstrip=False, normalized=False, special=True))
        vocab[s] = len(vocab)
    assert len(vocab) == vocab_size
    byte_level = dict(type="ByteLevel", add_prefix_space=False, trim_offsets=True, use_regex=True)
    return dict(version="1.0", truncation=None, padding=None, added_tokens=added,
                normalizer=None, pre_tokenizer=byte_level, post_processor=None,
                decoder=byte_level,
                model=dict(type="BPE", dropout=None, unk_token=None,
                           continuing_subword_prefix=None, end_of_word_suffix=None,
                           fuse_unk=False, byte_fallback=False,
                           vocab=vocab, merges=["%s %s" % m for m in merges]))


def to_bf16_bits(a):
    """float32 -> bfloat16 bit patterns, rounding to nearest even (no NaNs occur here)."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path, tensors, dtype):
    header, blobs, off = {}, [], 0
    for name, a in tensors:
        raw = (to_bf16_bits(a) if dtype == "bf16" else a.astype("<f4")).tobytes()
        header[name] = dict(dtype="BF16" if dtype == "bf16" else "F32", shape=list(a.shape),
                            data_offsets=[off, off + len(raw)])
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)
    return off


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--kv-heads", type=int)
    ap.add_argument("--head-dim", type=int)
    ap.add_argument("--ffn", type=int)
    ap.add_argument("--vocab", type=int, default=300)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--tied", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--rope-llama3", action="store_true",
                    help="add Llama 3.1 rope_scaling (factor 32, original context 8192)")
    a = ap.parse_args()
    kv = a.kv_heads or a.heads
    hd = a.head_dim or a.dim // a.heads
    ffn = a.ffn or (a.dim * 8 // 3 + 31) // 32 * 32
    if a.heads % kv or hd % 2:
        ap.error("--kv-heads must divide --heads and head_dim must be even")
    rng = np.random.default_rng(a.seed)

    def matrix(rows, k):  # HF layout: (out_features, in_features)
        s = np.sqrt(3.0 / k)
        return rng.uniform(-s, s, size=(rows, k)).astype(np.float32)

    def norm(n):
        return (1.0 + rng.uniform(-0.1, 0.1, size=n)).astype(np.float32)

    t = [("model.embed_tokens.weight", matrix(a.vocab, a.dim))]
    for i in range(a.layers):
        p = "model.layers.%d." % i
        t += [(p + "input_layernorm.weight", norm(a.dim)),
              (p + "self_attn.q_proj.weight", matrix(a.heads * hd, a.dim)),
              (p + "self_attn.k_proj.weight", matrix(kv * hd, a.dim)),
              (p + "self_attn.v_proj.weight", matrix(kv * hd, a.dim)),
              (p + "self_attn.o_proj.weight", matrix(a.dim, a.heads * hd)),
              (p + "post_attention_layernorm.weight", norm(a.dim)),
              (p + "mlp.gate_proj.weight", matrix(ffn, a.dim)),
              (p + "mlp.up_proj.weight", matrix(ffn, a.dim)),
              (p + "mlp.down_proj.weight", matrix(a.dim, ffn))]
    t.append(("model.norm.weight", norm(a.dim)))
    if not a.tied:
        t.append(("lm_head.weight", matrix(a.vocab, a.dim)))

    os.makedirs(a.dir, exist_ok=True)
    if a.shards <= 1:
        write_safetensors(os.path.join(a.dir, "model.safetensors"), t, a.dtype)
    else:
        per = -(-len(t) // a.shards)
        weight_map, total = {}, 0
        for s in range(a.shards):
            name = "model-%05d-of-%05d.safetensors" % (s + 1, a.shards)
            part = t[s * per:(s + 1) * per]
            total += write_safetensors(os.path.join(a.dir, name), part, a.dtype)
            weight_map.update({n: name for n, _ in part})
        with open(os.path.join(a.dir, "model.safetensors.index.json"), "w") as f:
            json.dump(dict(metadata=dict(total_size=total), weight_map=weight_map), f, indent=1)

    cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=a.dim,
               intermediate_size=ffn, num_hidden_layers=a.layers, num_attention_heads=a.heads,
               num_key_value_heads=kv, head_dim=hd, vocab_size=a.vocab,
               max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
               tie_word_embeddings=a.tied, hidden_act="silu", attention_bias=False,
               mlp_bias=False, bos_token_id=a.vocab - 2, eos_token_id=a.vocab - 1,
               torch_dtype="bfloat16" if a.dtype == "bf16" else "float32", rope_scaling=None)
    if a.rope_llama3:
        cfg["rope_scaling"] = dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0,
                                   high_freq_factor=4.0, original_max_position_embeddings=8192)
    with open(os.path.join(a.dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(a.dir, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json(a.vocab), f, ensure_ascii=False)
    with open(os.path.join(a.dir, "tokenizer_config.json"), "w") as f:
        json.dump(dict(bos_token=SPECIALS[0], eos_token=SPECIALS[1], add_bos_token=True,
                       add_eos_token=False, tokenizer_class="PreTrainedTokenizerFast"), f, indent=1)
    print("wrote %s: dim %d, %d layers, %d/%d heads of %d, ffn %d, vocab %d, %s%s"
          % (a.dir, a.dim, a.layers, a.heads, kv, hd, ffn, a.vocab, a.dtype,
             ", tied" if a.tied else ""))


if __name__ == "__main__":
    main()
