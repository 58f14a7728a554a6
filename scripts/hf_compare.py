#!/usr/bin/env python3
"""Our engine against Hugging Face transformers on random-weight Llama models.

For each case, builds a LlamaForCausalLM from a small LlamaConfig with random weights (uniform
with variance 1/K so activations stay O(1), norms 1 +- 0.1), saves it with save_pretrained
(safetensors) plus the small byte-level tokenizer of scripts/make_hf_random.py, runs the same
token ids through transformers (float32 on the CPU, from the saved weights, so a bf16 model is
compared against exact arithmetic on its bf16 weights) and through `synapse model perplexity DIR
--tokens ... --dump-logits FILE --backend B` for each backend asked for, and compares every
position's logits: NMSE (sum (ours - hf)^2 / sum hf^2) and the largest difference relative to
the largest |logit|. Needs torch and transformers (the GPU machine has them; no network).

  python3 scripts/hf_compare.py --synapse build/cuda/synapse --backends cpu,cuda [--out DIR]

Prints one line per (case, backend) and exits 1 if any is over its tolerance.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:  # reported by main()
    np = None

HERE = os.path.dirname(os.path.abspath(__file__))

# name, config overrides, dtype, tolerance (nmse) per backend
CASES = [
    ("f32-gqa", dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                     num_attention_heads=8, num_key_value_heads=2), "float32",
     dict(cpu=1e-8, cuda=1e-8)),
    ("f32-tied-llama3rope", dict(hidden_size=192, intermediate_size=512, num_hidden_layers=3,
                                 num_attention_heads=6, num_key_value_heads=6,
                                 tie_word_embeddings=True, rope_theta=500000.0,
                                 rope_scaling=dict(rope_type="llama3", factor=8.0,
                                                   low_freq_factor=1.0, high_freq_factor=4.0,
                                                   original_max_position_embeddings=64)),
     "float32", dict(cpu=1e-8, cuda=1e-8)),
    ("bf16-gqa", dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=2), "bfloat16",
     dict(cpu=1e-6, cuda=3e-3)),
]


def load_make_hf_random():
    spec = importlib.util.spec_from_file_location("make_hf_random",
                                                  os.path.join(HERE, "make_hf_random.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(case_dir, overrides, dtype, vocab, seed):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = dict(vocab_size=vocab, max_position_embeddings=512, rms_norm_eps=1e-5,
               rope_theta=10000.0, hidden_act="silu", attention_bias=False, mlp_bias=False,
               bos_token_id=vocab - 2, eos_token_id=vocab - 1, tie_word_embeddings=False)
    cfg.update(overrides)
    model = LlamaForCausalLM(LlamaConfig(**cfg)).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + (torch.rand_like(p) * 0.2 - 0.1))
            else:
                s = (3.0 / p.shape[1]) ** 0.5
                p.copy_(torch.rand_like(p) * 2 * s - s)
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(case_dir, safe_serialization=True)
    mk = load_make_hf_random()
    with open(os.path.join(case_dir, "tokenizer.json"), "w") as f:
        json.dump(mk.tokenizer_json(vocab), f, ensure_ascii=False)
    with open(os.path.join(case_dir, "tokenizer_config.json"), "w") as f:
        json.dump(dict(bos_token=mk.SPECIALS[0], eos_token=mk.SPECIALS[1], add_bos_token=True,
                       add_eos_token=False, tokenizer_class="PreTrainedTokenizerFast"), f)


def hf_logits(case_dir, ids):
    import torch
    from transformers import LlamaForCausalLM

    # the saved weights (bf16 ones included), computed in float32 on the CPU
    model = LlamaForCausalLM.from_pretrained(case_dir, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        out = model(torch.tensor([ids], dtype=torch.long)).logits[0]
    return out.numpy().astype(np.float64)


def ours(synapse, case_dir, ids, backend, log):
    path = os.path.join(case_dir, "logits-%s.f32" % backend)
    cmd = [synapse, "model", "perplexity", case_dir, "--tokens", " ".join(map(str, ids)),
           "--dump-logits", path, "--backend", backend]
    r = subprocess.run(cmd, capture_output=True, text=True,
                       env=dict(os.environ, SYNAPSE_LOG="info"))
    log.write("$ %s\n%s%s\n" % (" ".join(cmd), r.stdout, r.stderr))
    if r.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    if backend == "cuda" and "using the CPU backend" in r.stderr:
        raise RuntimeError("--backend cuda fell back to the CPU: " + r.stderr.strip())
    return np.fromfile(path, dtype="<f4").astype(np.float64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synapse", default="build/cuda/synapse")
    ap.add_argument("--backends", default="cpu,cuda")
    ap.add_argument("--out", help="keep the models and a log here (default: a temp dir)")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=96, help="positions to compare")
    a = ap.parse_args()
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        if np is None:
            raise ImportError("No module named 'numpy'")
    except ImportError as e:
        print("hf_compare: SKIPPED: %s (needs numpy, torch and transformers)" % e)
        return 0
    out = a.out or tempfile.mkdtemp(prefix="hf-compare-")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(5)
    ids = [a.vocab - 2] + [int(x) for x in rng.integers(0, a.vocab - 2, size=a.tokens - 1)]
    failed = 0
    with open(os.path.join(out, "hf_compare.log"), "w") as log:
        for i, (name, overrides, dtype, tols) in enumerate(CASES):
            case_dir = os.path.join(out, name)
            build(case_dir, overrides, dtype, a.vocab, 100 + i)
            ref = hf_logits(case_dir, ids)
            for be in a.backends.split(","):
                try:
                    got = ours(a.synapse, case_dir, ids, be, log).reshape(ref.shape)
                except Exception as e:  # report and go on with the other cases
                    print("%-22s %-5s FAIL  %s" % (name, be, e))
                    failed += 1
                    continue
                err = float(((got - ref) ** 2).sum() / (ref ** 2).sum())
                rel = float(np.abs(got - ref).max() / np.abs(ref).max())
                agree = float((got.argmax(1) == ref.argmax(1)).mean())
                ok = err <= tols[be]
                failed += not ok
                print("%-22s %-5s %s  nmse %.3g (tol %.0e)  max rel %.3g  argmax agree %.1f%%"
                      % (name, be, "ok  " if ok else "FAIL", err, tols[be], rel, 100 * agree))
    print("hf_compare: %s (models and log in %s)" % ("FAILED" if failed else "ok", out))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
