#!/usr/bin/python3
"""Reference Llama forward pass in NumPy, float64, for cross-checking the engine.

It shares nothing with the C code: its own GGUF parser (header, metadata, tensor table,
alignment; F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q5_K/Q6_K dequantisation), its own
safetensors + config.json reader for Hugging Face directories (one file or shards listed by
model.safetensors.index.json), and the plainest forward pass we could write: RMSNorm, RoPE,
grouped-query causal attention, SwiGLU, final norm, output projection (or the tied token
embedding). Speed is not a goal; it is meant for models of a few million parameters. It is not a
tokenizer: it takes token ids.

  /usr/bin/python3 scripts/ref_llama.py MODEL --tokens "1 2 3" --out logits.f32 [--act-q8]

MODEL is a .gguf file or a directory with config.json. The output holds float32 little-endian
logits for every position: n_tokens rows of n_vocab, row i being the logits after token i.

--act-q8 rounds the input of every product with a quantised weight to 8-bit blocks first (scale
max|x|/127, values round(x/scale); blocks of 32 for Q8_0/Q4_0/Q4_1/Q5_0/Q5_1, of 256 for the
K-quants Q4_K/Q5_K/Q6_K), as the engine's CPU kernels do, so that the comparison measures the
engine's arithmetic rather than this deliberate rounding.

RoPE layouts: GGUF "llama" files rotate adjacent pairs (x[2i], x[2i+1]); Hugging Face
checkpoints rotate halves (x[i], x[i + head_dim/2]). Both use frequency theta^(-2i/head_dim),
divided by rope_freqs.weight (GGUF) or by the Llama 3 scaling of config.json's rope_scaling.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

# ---- GGUF ----

GGUF_MAGIC = 0x46554747
# metadata value types: struct format of each scalar type
GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
               10: "<Q", 11: "<q", 12: "<d"}
GGUF_STRING, GGUF_ARRAY = 8, 9
# tensor types: (elements per block, bytes per block)
T_F32, T_F16, T_Q4_0, T_Q8_0, T_BF16 = 0, 1, 2, 8, 30
T_Q4_1, T_Q5_0, T_Q5_1 = 3, 6, 7
T_Q4_K, T_Q5_K, T_Q6_K = 12, 13, 14
TYPE_BLOCK = {T_F32: (1, 4), T_F16: (1, 2), T_Q4_0: (32, 18), T_Q8_0: (32, 34), T_BF16: (1, 2),
              T_Q4_1: (32, 20), T_Q5_0: (32, 22), T_Q5_1: (32, 24),
              T_Q4_K: (256, 144), T_Q5_K: (256, 176), T_Q6_K: (256, 210)}
BLOCKS_OF_32 = (T_Q8_0, T_Q4_0, T_Q4_1, T_Q5_0, T_Q5_1)
K_QUANTS = (T_Q4_K, T_Q5_K, T_Q6_K)


class Reader:
    """Little-endian cursor over a bytes object, refusing to read past its end."""

    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError("gguf: need %d bytes at offset %d, file has %d"
                             % (n, self.pos, len(self.buf)))
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        return self.take(self.unpack("<Q")).decode("utf-8")

    def value(self, vtype):
        if vtype in GGUF_SCALAR:
            return self.unpack(GGUF_SCALAR[vtype])
        if vtype == GGUF_STRING:
            return self.string()
        if vtype == GGUF_ARRAY:
            etype, n = self.unpack("<I"), self.unpack("<Q")
            return [self.value(etype) for _ in range(n)]
        raise ValueError("gguf: unknown value type %d" % vtype)


def dequantize(ttype, raw, n):
    """n elements of type ttype from raw bytes, as float64."""
    if ttype == T_F32:
        return np.frombuffer(raw, "<f4", n).astype(np.float64)
    if ttype == T_F16:
        return np.frombuffer(raw, "<f2", n).astype(np.float64)
    if ttype == T_BF16:
        bits = np.frombuffer(raw, "<u2", n).astype(np.uint32) << 16
        return bits.view(np.float32).astype(np.float64)
    if ttype == T_Q8_0:
        blocks = np.frombuffer(raw, np.dtype([("d", "<f2"), ("q", "i1", 32)]), n // 32)
        return (blocks["d"].astype(np.float64)[:, None] * blocks["q"]).reshape(-1)
    if ttype == T_Q4_0:
        blocks = np.frombuffer(raw, np.dtype([("d", "<f2"), ("q", "u1", 16)]), n // 32)
        q = np.concatenate([blocks["q"] & 15, blocks["q"] >> 4], axis=1).astype(np.float64) - 8
        return (blocks["d"].astype(np.float64)[:, None] * q).reshape(-1)
    if ttype in (T_Q4_1, T_Q5_0, T_Q5_1):
        return dequantize_q32_offset(raw, n // 32, ttype)
    if ttype in (T_Q4_K, T_Q5_K):
        return dequantize_q45_k(raw, n // 256, ttype == T_Q5_K)
    if ttype == T_Q6_K:
        return dequantize_q6_k(raw, n // 256)
    raise ValueError("unsupported tensor type %d" % ttype)


def dequantize_q32_offset(raw, nb, ttype):
    """Q4_1 (f16 d, f16 m, 16 bytes), Q5_0 (f16 d, u32 qh, 16 bytes), Q5_1 (f16 d, f16 m, u32 qh,
    16 bytes), blocks of 32: element j < 16 is the low nibble of byte j, element j + 16 its high
    nibble; Q5_0/Q5_1 add 16 times bit j of qh to element j. Q5_0: d*(q - 16); others d*q + m."""
    fields = [("d", "<f2")]
    if ttype != T_Q5_0:
        fields.append(("m", "<f2"))
    if ttype != T_Q4_1:
        fields.append(("qh", "<u4"))
    fields.append(("qs", "u1", 16))
    blocks = np.frombuffer(raw, np.dtype(fields), nb)
    qs = blocks["qs"].astype(np.int64)
    q = np.concatenate([qs & 15, qs >> 4], axis=1)
    if ttype != T_Q4_1:
        q = q + 16 * ((blocks["qh"].astype(np.int64)[:, None] >> np.arange(32)[None, :]) & 1)
    d = blocks["d"].astype(np.float64)[:, None]
    if ttype == T_Q5_0:
        return (d * (q - 16)).reshape(-1)
    return (d * q + blocks["m"].astype(np.float64)[:, None]).reshape(-1)


def k_scales_mins(s):
    """The eight 6-bit scales and mins of each Q4_K/Q5_K super-block from its 12 scale bytes
    (nb, 12): bytes 0-3 hold the low 6 bits of scales 0-3 (top 2 bits: those of scales 4-7),
    bytes 4-7 the same for mins, bytes 8-11 the low 4 bits of scales 4-7 (low nibble) and of
    mins 4-7 (high nibble)."""
    s = s.astype(np.int64)
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc, mn


def dequantize_q45_k(raw, nb, q5):
    """Q4_K (f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles) or Q5_K (the same with 32
    bytes of fifth bits before the nibbles). Sub-block j (32 elements) of a super-block reads the
    low nibbles of bytes 32*(j//2) .. +31 when j is even, the high ones when odd; Q5_K adds 16
    times bit j of qh[l]. Value: d*scale_j*q - dmin*min_j."""
    fields = [("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", 12)]
    if q5:
        fields.append(("qh", "u1", 32))
    fields.append(("qs", "u1", 128))
    blocks = np.frombuffer(raw, np.dtype(fields), nb)
    qs = blocks["qs"].reshape(nb, 4, 32).astype(np.int64)
    q = np.stack([qs & 15, qs >> 4], axis=2).reshape(nb, 8, 32)  # (block, sub-block j, l)
    if q5:
        bits = (blocks["qh"].astype(np.int64)[:, None, :] >> np.arange(8)[None, :, None]) & 1
        q = q + 16 * bits
    sc, mn = k_scales_mins(blocks["scales"])
    d = blocks["d"].astype(np.float64)[:, None, None]
    dmin = blocks["dmin"].astype(np.float64)[:, None, None]
    return (d * sc[:, :, None] * q - dmin * mn[:, :, None]).reshape(-1)


def dequantize_q6_k(raw, nb):
    """Q6_K: 128 bytes of low nibbles (ql), 64 bytes of 2-bit pairs (qh), 16 int8 scales, f16 d.
    Half h (128 elements) uses ql[64h .. 64h+63] and qh[32h .. 32h+31]; its quarter i (32
    elements, l = 0..31) takes the low nibble of ql[64h + 32*(i%2) + l] for i < 2, the high one
    for i >= 2, and bits 2i, 2i+1 of qh[32h + l] as bits 4-5. Value: d*scale[e//16]*(q - 32)."""
    blocks = np.frombuffer(raw, np.dtype([("ql", "u1", 128), ("qh", "u1", 64),
                                          ("sc", "i1", 16), ("d", "<f2")]), nb)
    ql = blocks["ql"].reshape(nb, 2, 2, 32).astype(np.int64)  # (block, half, i % 2, l)
    qh = blocks["qh"].reshape(nb, 2, 1, 32).astype(np.int64)  # (block, half, -, l)
    low = np.concatenate([ql & 15, ql >> 4], axis=2)  # quarters i = 0, 1, 2, 3
    high = (qh >> (2 * np.arange(4))[None, None, :, None]) & 3
    q = (low | (high << 4)).reshape(nb, 256) - 32
    scale = np.repeat(blocks["sc"].astype(np.float64), 16, axis=1)
    return (blocks["d"].astype(np.float64)[:, None] * scale * q).reshape(-1)


def read_gguf(path):
    """Returns (metadata dict, {name: (float64 array in row-major shape, type)})."""
    with open(path, "rb") as f:
        buf = f.read()
    r = Reader(buf)
    magic, version = r.unpack("<I"), r.unpack("<I")
    if magic != GGUF_MAGIC or version not in (2, 3):
        raise ValueError("%s: not a GGUF v2/v3 file (magic %08x, version %d)"
                         % (path, magic, version))
    n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.unpack("<I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.unpack("<I")
        ne = [r.unpack("<Q") for _ in range(n_dims)]
        infos.append((name, ne, r.unpack("<I"), r.unpack("<Q")))
    align = int(meta.get("general.alignment", 32))
    data_start = (r.pos + align - 1) // align * align
    tensors = {}
    for name, ne, ttype, off in infos:
        if ttype not in TYPE_BLOCK:
            raise ValueError("%s: tensor %s has type %d, which this script cannot read"
                             % (path, name, ttype))
        n = int(np.prod(ne))
        per, size = TYPE_BLOCK[ttype]
        begin = data_start + off
        end = begin + n // per * size
        if n % per or end > len(buf):
            raise ValueError("%s: tensor %s (%s elements) does not fit" % (path, name, n))
        # GGUF lists ne innermost first; NumPy wants the outermost first.
        tensors[name] = (dequantize(ttype, buf[begin:end], n).reshape(ne[::-1]), ttype)
    return meta, tensors


def gguf_model(path):
    meta, t = read_gguf(path)
    arch = meta.get("general.architecture", "llama")
    if arch != "llama":
        raise ValueError("%s: architecture %s; this reference runs llama only" % (path, arch))

    def k(name, default=None):
        v = meta.get("%s.%s" % (arch, name), default)
        if v is None:
            raise ValueError("%s: missing %s.%s" % (path, arch, name))
        return v

    dim, n_head = int(k("embedding_length")), int(k("attention.head_count"))
    hp = dict(dim=dim, n_layer=int(k("block_count")), n_head=n_head,
              n_kv_head=int(k("attention.head_count_kv", n_head)),
              head_dim=int(k("attention.key_length", dim // n_head)),
              eps=float(k("attention.layer_norm_rms_epsilon")),
              theta=float(k("rope.freq_base", 10000.0)), neox=False)
    hp["rope_div"] = t["rope_freqs.weight"][0] if "rope_freqs.weight" in t else None
    w = dict(embd=t["token_embd.weight"], norm=t["output_norm.weight"],
             out=t.get("output.weight", t["token_embd.weight"]), layers=[])
    for i in range(hp["n_layer"]):
        g = lambda n: t["blk.%d.%s.weight" % (i, n)]  # noqa: E731
        w["layers"].append(dict(attn_norm=g("attn_norm"), q=g("attn_q"), k=g("attn_k"),
                                v=g("attn_v"), o=g("attn_output"), ffn_norm=g("ffn_norm"),
                                gate=g("ffn_gate"), up=g("ffn_up"), down=g("ffn_down")))
    return hp, w


# ---- Hugging Face directory ----

ST_DTYPE = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8"}


def read_safetensors(path, out):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack_from("<Q", buf, 0)[0]
    header = json.loads(buf[8:8 + n])
    base = 8 + n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        if dt not in ST_DTYPE:
            continue  # buffers the forward pass does not use
        b, e = info["data_offsets"]
        a = np.frombuffer(buf[base + b:base + e], ST_DTYPE[dt])
        if dt == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        # dtype F32 marks an unquantised weight, whatever its storage type
        out[name] = (a.astype(np.float64).reshape(info["shape"]), T_F32)


def llama3_divisors(head_dim, theta, rs):
    """Llama 3.1 rope scaling as a divisor per frequency (what llama.cpp calls rope_freqs)."""
    factor, low, high = rs["factor"], rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
    orig = rs.get("original_max_position_embeddings", 8192)
    div = np.ones(head_dim // 2)
    for i in range(head_dim // 2):
        wavelen = 2 * math.pi / theta ** (-2.0 * i / head_dim)
        if wavelen > orig / low:
            div[i] = factor
        elif wavelen >= orig / high:
            smooth = (orig / wavelen - low) / (high - low)
            div[i] = 1.0 / ((1 - smooth) / factor + smooth)
    return div


def hf_model(path):
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    t = {}
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            for shard in sorted(set(json.load(f)["weight_map"].values())):
                read_safetensors(os.path.join(path, shard), t)
    else:
        read_safetensors(os.path.join(path, "model.safetensors"), t)
    dim, n_head = cfg["hidden_size"], cfg["num_attention_heads"]
    theta = float(cfg.get("rope_theta", 10000.0))
    hd = cfg.get("head_dim") or dim // n_head
    hp = dict(dim=dim, n_layer=cfg["num_hidden_layers"], n_head=n_head,
              n_kv_head=cfg.get("num_key_value_heads") or n_head, head_dim=hd,
              eps=float(cfg.get("rms_norm_eps", 1e-6)), theta=theta, neox=True, rope_div=None)
    rs = cfg.get("rope_scaling")
    if rs:
        kind = rs.get("rope_type", rs.get("type"))
        if kind == "llama3":
            hp["rope_div"] = llama3_divisors(hd, theta, rs)
        elif kind == "linear":
            hp["rope_div"] = np.full(hd // 2, float(rs["factor"]))  # positions / factor
        elif kind != "default":
            raise ValueError("rope_scaling type %s not supported" % kind)
    embd = t["model.embed_tokens.weight"]
    tied = cfg.get("tie_word_embeddings", False) or "lm_head.weight" not in t
    w = dict(embd=embd, norm=t["model.norm.weight"],
             out=embd if tied else t["lm_head.weight"], layers=[])
    for i in range(hp["n_layer"]):
        g = lambda n: t["model.layers.%d.%s.weight" % (i, n)]  # noqa: E731
        w["layers"].append(dict(attn_norm=g("input_layernorm"), q=g("self_attn.q_proj"),
                                k=g("self_attn.k_proj"), v=g("self_attn.v_proj"),
                                o=g("self_attn.o_proj"), ffn_norm=g("post_attention_layernorm"),
                                gate=g("mlp.gate_proj"), up=g("mlp.up_proj"),
                                down=g("mlp.down_proj")))
    return hp, w


# ---- forward pass ----

def quantize_q8_0(x, block=32):
    """Rounds each row of x to 8-bit blocks of `block` elements (see --act-q8) in float32
    arithmetic, as the engine's kernels compute it: scale d = max|x| / 127 kept in float32,
    q = x * (1/d) rounded to nearest (ties to even), clamped to [-127, 127]. Returns the
    dequantised values q * d as float64."""
    rows, k = x.shape
    b = x.astype(np.float32).reshape(rows, k // block, block)
    d = np.abs(b).max(axis=2, keepdims=True) / np.float32(127)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d > 0)
    q = np.clip(np.rint(b * inv), -127, 127)
    return (q.astype(np.float64) * d.astype(np.float64)).reshape(rows, k)


class Forward:
    def __init__(self, hp, w, act_q8):
        self.hp, self.w, self.act_q8 = hp, w, act_q8

    def matmul(self, x, weight):
        """x (T, K) times a weight stored as (R, K): y (T, R)."""
        a, ttype = weight
        if self.act_q8 and ttype in BLOCKS_OF_32:
            x = quantize_q8_0(x)
        elif self.act_q8 and ttype in K_QUANTS:
            x = quantize_q8_0(x, 256)
        return x @ a.T

    def rmsnorm(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.hp["eps"]) * weight[0]

    def rope(self, x):
        """x (T, heads, head_dim): rotates each head by its position's angles."""
        hp = self.hp
        hd = hp["head_dim"]
        freq = hp["theta"] ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        if hp["rope_div"] is not None:
            freq = freq / hp["rope_div"]
        ang = np.arange(x.shape[0], dtype=np.float64)[:, None] * freq[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        if hp["neox"]:
            a, b = x[..., :hd // 2], x[..., hd // 2:]
            return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    def run(self, tokens):
        hp, w = self.hp, self.w
        T, nh, nkv, hd = len(tokens), hp["n_head"], hp["n_kv_head"], hp["head_dim"]
        x = w["embd"][0][tokens].copy()  # embedding rows are read, not multiplied
        causal = np.triu(np.full((T, T), -np.inf), 1)
        for L in w["layers"]:
            h = self.rmsnorm(x, L["attn_norm"])
            q = self.rope(self.matmul(h, L["q"]).reshape(T, nh, hd))
            k = self.rope(self.matmul(h, L["k"]).reshape(T, nkv, hd))
            v = self.matmul(h, L["v"]).reshape(T, nkv, hd)
            group = nh // nkv  # query heads per key/value head
            att = np.empty((T, nh, hd))
            for head in range(nh):
                kv = head // group
                s = q[:, head, :] @ k[:, kv, :].T / math.sqrt(hd) + causal
                p = np.exp(s - s.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
                att[:, head, :] = p @ v[:, kv, :]
            x = x + self.matmul(att.reshape(T, nh * hd), L["o"])
            h = self.rmsnorm(x, L["ffn_norm"])
            g, u = self.matmul(h, L["gate"]), self.matmul(h, L["up"])
            x = x + self.matmul(g / (1.0 + np.exp(-g)) * u, L["down"])
        return self.matmul(self.rmsnorm(x, w["norm"]), w["out"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a .gguf file or a Hugging Face directory")
    ap.add_argument("--tokens", required=True, help='token ids, e.g. "1 2 3"')
    ap.add_argument("--out", required=True, help="where to write float32 logits")
    ap.add_argument("--act-q8", action="store_true",
                    help="round matmul inputs to 8-bit blocks for quantised weights, as the engine "
                    "does: blocks of 32 for Q8_0/Q4_0/Q4_1/Q5_0/Q5_1, of 256 for Q4_K/Q5_K/Q6_K")
    args = ap.parse_args()
    tokens = [int(s) for s in args.tokens.replace(",", " ").split()]
    if not tokens:
        ap.error("--tokens is empty")
    if os.path.isdir(args.model):
        hp, w = hf_model(args.model)
    else:
        hp, w = gguf_model(args.model)
    n_vocab = w["embd"][0].shape[0]
    bad = [t for t in tokens if not 0 <= t < n_vocab]
    if bad:
        ap.error("token ids %s outside the vocabulary of %d" % (bad, n_vocab))
    logits = Forward(hp, w, args.act_q8).run(tokens)
    logits.astype("<f4").tofile(args.out)
    print("%d tokens x %d logits -> %s" % (len(tokens), n_vocab, args.out))


if __name__ == "__main__":
    try:
        main()
    except (ValueError, KeyError, OSError) as e:
        sys.stderr.write("ref_llama.py: %s\n" % (e,))
        sys.exit(1)
