#!/usr/bin/env python3
"""Records reference logits of exported PEFT adapters with PyTorch, for test/peft.test.ts.

It shares no code with text2sql's engine (with the other PyTorch makers it shares only
scripts/torch_ref_common.py's GGUF header reader, sha256 and fixture writer; its model is its own)
and works in Hugging Face row order throughout: the tiny GGUF's q_proj/k_proj weights are
un-permuted back to HF order (the inverse of llama.cpp's converter permutation), RoPE is HF's
rotate_half (not ggml's adjacent pairs), GQA repeats KV heads with repeat_interleave, RMSNorm and
SwiGLU as in transformers' LlamaModel, and each target module computes y = W x + s * B (A x) with
s = lora_alpha / r (lora_alpha / sqrt(r) with use_rslora), reading adapter_model.safetensors (with
a small numpy reader written here) and adapter_config.json exactly as PEFT would. Everything is
float64.

The PEFT folders come from the test itself, so only the fixture (logits) is committed:

  PEFT_RECORD_DIR=/tmp/t2s-peft-rec npx vitest run test/peft.test.ts -t record
  /usr/bin/python3 scripts/make-peft-reference.py /tmp/t2s-peft-rec test/fixtures/peft-reference.json

The record step writes /tmp/t2s-peft-rec/manifest.json (the GGUF path, the adapter's seed and
scale, and one folder per case). It needs Debian's python3-torch (1.13) and the gguf-py reader
from the llama.cpp source that node-llama-cpp ships.

The other families (issue 13) are recorded the same way, one folder each:

  PEFT_RECORD_DIR=/tmp/t2s-peft-fam npx vitest run test/peft-families.test.ts -t record
  for f in llama3 qwen2 qwen3; do
    /usr/bin/python3 scripts/make-peft-reference.py /tmp/t2s-peft-fam/$f test/fixtures/peft-reference-$f.json
  done

as transformers writes each model: Qwen2 adds the q/k/v biases (q_proj.bias, ...), Qwen3 RMSNorms
each head of q and k (q_norm, k_norm) before RoPE; both keep HF row order in GGUF (nothing is
un-permuted). Llama 3 computes its RoPE frequencies with rope_type "llama3" from the
rope_scaling values in the manifest (transformers' _compute_llama3_parameters), not from the
GGUF's rope_freqs.weight, which is only checked against them.
"""
import json
import math
import os
import sys

import numpy as np
import torch

from torch_ref_common import GGUFReader, read_hparams, sha256, write_fixture

TOKENS = [1, 518, 25580, 29962, 3251, 403, 3758, 363, 278, 1494, 1139]
N_IDS = 256  # logits recorded per position: these vocabulary ids, plus the full-vocab logsumexp

HF_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
}


def unpermute(w, n_head):
    """Inverse of llama.cpp's w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2).reshape(rows, cols)."""
    rows, cols = w.shape
    return w.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def permute(w, n_head):
    rows, cols = w.shape
    return w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def load_hf(path):
    """The GGUF's weights under HF names, in HF row order."""
    r = GGUFReader(path)
    hp = read_hparams(r)
    w = {}
    for t in r.tensors:
        a = np.array(t.data, dtype=np.float64)
        name = t.name
        if name == "token_embd.weight":
            w["model.embed_tokens.weight"] = a
        elif name == "output_norm.weight":
            w["model.norm.weight"] = a
        elif name == "output.weight":
            w["lm_head.weight"] = a
        elif name == "rope_freqs.weight":
            hp["rope_freqs"] = a  # only checked against the HF computation
        else:
            _, il, stem, kind = name.split(".")
            if hp["arch"] != "llama":
                pass  # qwen2/qwen3: NEOX RoPE, the GGUF keeps HF's row order
            elif stem == "attn_q":
                u = unpermute(a, hp["n_head"])
                assert np.array_equal(permute(u, hp["n_head"]), a)
                a = u
            elif stem == "attn_k":
                u = unpermute(a, hp["n_head_kv"])
                assert np.array_equal(permute(u, hp["n_head_kv"]), a)
                a = u
            w[f"model.layers.{il}.{HF_NAMES[stem]}.{kind}"] = a
    if "lm_head.weight" not in w:
        w["lm_head.weight"] = w["model.embed_tokens.weight"]
    return {k: torch.tensor(v) for k, v in w.items()}, hp


def read_safetensors(path):
    """A minimal safetensors reader: F32, F16 and BF16 to float64 numpy arrays."""
    with open(path, "rb") as f:
        buf = f.read()
    n = int.from_bytes(buf[:8], "little")
    header = json.loads(buf[8:8 + n].decode("utf8"))
    data = buf[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[b:e]
        if info["dtype"] == "F32":
            a = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        elif info["dtype"] == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(np.float64)
        elif info["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        else:
            raise ValueError(f"{path}: {name}: dtype {info['dtype']}")
        out[name] = a.reshape(info["shape"])
    return out


def load_peft(folder):
    with open(os.path.join(folder, "adapter_config.json")) as f:
        cfg = json.load(f)
    assert cfg["peft_type"] == "LORA" and cfg["bias"] == "none" and not cfg["fan_in_fan_out"]
    r, alpha = cfg["r"], cfg["lora_alpha"]
    scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    st = read_safetensors(os.path.join(folder, "adapter_model.safetensors"))
    lora = {}
    for key, a in st.items():
        assert key.startswith("base_model.model.") and key.endswith(".weight"), key
        module, ab = key[len("base_model.model."):-len(".weight")].rsplit(".", 1)
        assert module.split(".")[-1] in cfg["target_modules"], key
        lora.setdefault(module, {})[ab] = torch.tensor(a)
    for module, p in lora.items():
        assert p["lora_A"].shape[0] == r and p["lora_B"].shape[1] == r, module
    return lora, scale, cfg


def rms_norm(x, weight, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def llama3_inv_freq(inv_freq, p):
    """transformers' _compute_llama3_parameters (rope_type "llama3")."""
    factor, low, high, old = p["factor"], p["low_freq_factor"], p["high_freq_factor"], p["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_freq_llama)


def rope_hf(x, base, rope_scaling=None):
    # x: [T, heads, hd]; transformers' LlamaRotaryEmbedding (Qwen2/Qwen3 alike) + apply_rotary_pos_emb
    T, _, hd = x.shape
    inv_freq = 1.0 / base ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    if rope_scaling is not None:
        inv_freq = llama3_inv_freq(inv_freq, rope_scaling)
    freqs = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    return x * cos + rotate_half(x) * sin


def forward(w, hp, tokens, lora=None, scale=0.0):
    nh, nkv, hd = hp["n_head"], hp["n_head_kv"], hp["hd"]
    g = nh // nkv
    T = len(tokens)
    rs = hp.get("rope_scaling")

    def lin(x, module):
        y = x @ w[module + ".weight"].T
        if lora is not None and module in lora:
            y = y + scale * (x @ lora[module]["lora_A"].T) @ lora[module]["lora_B"].T
        if module + ".bias" in w:  # Qwen2's q/k/v (PEFT leaves the base bias as it is)
            y = y + w[module + ".bias"]
        return y

    def head_norm(x, module):  # Qwen3's q_norm / k_norm over head_dim
        return rms_norm(x, w[module + ".weight"], hp["eps"]) if module + ".weight" in w else x

    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    mask = torch.full((T, T), -math.inf).triu(1)
    for il in range(hp["n_layer"]):
        p = f"model.layers.{il}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], hp["eps"])
        q = rope_hf(head_norm(lin(h, p + "self_attn.q_proj").view(T, nh, hd), p + "self_attn.q_norm"), hp["base"], rs)
        k = rope_hf(head_norm(lin(h, p + "self_attn.k_proj").view(T, nkv, hd), p + "self_attn.k_norm"), hp["base"], rs)
        k = k.repeat_interleave(g, dim=1)
        v = lin(h, p + "self_attn.v_proj").view(T, nkv, hd).repeat_interleave(g, dim=1)
        att = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd) + mask
        o = torch.einsum("hqk,khd->qhd", torch.softmax(att, -1), v).reshape(T, nh * hd)
        x = x + lin(o, p + "self_attn.o_proj")
        h2 = rms_norm(x, w[p + "post_attention_layernorm.weight"], hp["eps"])
        x = x + lin(torch.nn.functional.silu(lin(h2, p + "mlp.gate_proj")) * lin(h2, p + "mlp.up_proj"), p + "mlp.down_proj")
    return rms_norm(x, w["model.norm.weight"], hp["eps"]) @ w["lm_head.weight"].T


def rel_error(a, b):
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def main():
    rec_dir, out_path = sys.argv[1], sys.argv[2]
    with open(os.path.join(rec_dir, "manifest.json")) as f:
        manifest = json.load(f)
    w, hp = load_hf(manifest["model"])
    tokens = manifest.get("tokens", TOKENS)
    if manifest.get("ropeScaling"):
        hp["rope_scaling"] = manifest["ropeScaling"]
        hd = hp["hd"]
        inv = 1.0 / hp["base"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        # the GGUF's rope_freqs.weight divides ggml's angles: it must be inv / llama3(inv)
        ratio = (inv / llama3_inv_freq(inv, manifest["ropeScaling"])).numpy()
        assert np.allclose(ratio, hp["rope_freqs"], rtol=1e-6), (ratio, hp["rope_freqs"])
        assert not np.allclose(ratio, 1.0)
    else:
        assert "rope_freqs" not in hp
    V = w["lm_head.weight"].shape[0]
    ids = sorted(int(i) for i in np.random.default_rng(7).choice(V, N_IDS, replace=False))

    def record(logits):
        return {
            "logits": [[float(f"{x:.9g}") for x in row[ids].tolist()] for row in logits],
            "logsumexp": [float(f"{x:.12g}") for x in torch.logsumexp(logits, -1).tolist()],
        }

    base = forward(w, hp, tokens)
    cases, full = [], {}
    for c in manifest["cases"]:
        folder = os.path.join(rec_dir, c["dir"])
        lora, scale, cfg = load_peft(folder)
        logits = forward(w, hp, tokens, lora, scale)
        full[c["name"]] = logits
        cases.append({
            **c,
            "scale": scale,
            "files": {n: sha256(os.path.join(folder, n)) for n in ("adapter_config.json", "adapter_model.safetensors")},
            **record(logits),
        })
        print(f"{c['name']}: scale {scale}, relative change against the base model {rel_error(logits, base):.3g}")
    for c in cases:
        if c.get("sameAs"):
            c["relErrorAgainstGood"] = rel_error(full[c["name"]], full[c["sameAs"]])
            print(f"{c['name']}: relative error against {c['sameAs']} {c['relErrorAgainstGood']:.3g}")

    fixture = {
        "about": "logits of exported PEFT adapters, recorded by scripts/make-peft-reference.py (PyTorch " + torch.__version__ + ", float64, HF row order, rotate_half RoPE)" + (f", {hp['arch']}" if hp["arch"] != "llama" or manifest.get("ropeScaling") else ""),
        "model": {"makeTestModel": manifest["makeTestModel"], "sha256": sha256(manifest["model"])},
        "adapter": manifest["adapter"],
        "tokens": tokens,
        "vocabIds": ids,
        "base": record(base),
        "cases": cases,
    }
    write_fixture(out_path, fixture)
    print(f"wrote {out_path}: {len(cases)} cases, {len(TOKENS)} positions x {len(ids)} logits")


if __name__ == "__main__":
    main()
