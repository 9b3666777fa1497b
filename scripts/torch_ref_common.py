"""What the PyTorch fixture makers share: make-torch-reference.py, make-grpo-reference.py and
make-peft-reference.py import it (the makers run as scripts, so this folder is on sys.path).

None of it is the engine's code: the GGUF is read with gguf-py (the llama.cpp source that
node-llama-cpp ships), and the model below is written from llama.cpp's src/models/<arch>.cpp in
float64. It holds:
  - the gguf-py import and float64 as torch's default dtype;
  - read_hparams: the model's shape from the GGUF header (all three makers);
  - the float64 model in GGUF (llama.cpp) row order, with LoRA as PEFT defines it
    (y = W x + (alpha / r) B A x): load, rms_norm, rope, forward (the training and GRPO makers;
    the PEFT maker has its own, in Hugging Face row order, so the two orders are checked against
    each other rather than sharing a reading);
  - init_lora: the seeded float32-representable starting adapter, and adamw (the training and
    GRPO makers);
  - sha256 and write_fixture (all three).
"""
import hashlib
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "node_modules", ".cache", "text2sql", "llama.cpp", "gguf-py"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from gguf.gguf_reader import GGUFReader  # noqa: E402
from gguf.quants import dequantize  # noqa: E402
from gguf.constants import GGMLQuantizationType  # noqa: E402

torch.set_default_dtype(torch.float64)

TARGETS = ["q", "k", "v", "o", "gate", "up", "down"]
STEMS = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output", "gate": "ffn_gate", "up": "ffn_up", "down": "ffn_down"}
R, ALPHA = 2, 4.0


def field(r, key):
    return r.fields[key].parts[-1][0].item()


def read_hparams(r):
    """The model's shape from a GGUFReader's header: arch, n_embd, n_layer, n_head, n_head_kv, hd, eps, base."""
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    n_embd, n_head = field(r, f"{arch}.embedding_length"), field(r, f"{arch}.attention.head_count")
    return {
        "arch": arch,
        "n_embd": n_embd,
        "n_layer": field(r, f"{arch}.block_count"),
        "n_head": n_head,
        "n_head_kv": field(r, f"{arch}.attention.head_count_kv"),
        "hd": field(r, f"{arch}.attention.key_length") if f"{arch}.attention.key_length" in r.fields else n_embd // n_head,
        "eps": field(r, f"{arch}.attention.layer_norm_rms_epsilon"),
        "base": field(r, f"{arch}.rope.freq_base"),
    }


def load(path):
    """The GGUF's tensors as float64 torch tensors under their GGUF names (a quantized one dequantized by
    gguf-py's own numpy code), and read_hparams."""
    r = GGUFReader(path)
    plain = (GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16)

    def values(t):
        if t.tensor_type in plain:
            return np.array(t.data, dtype=np.float64)
        return dequantize(t.data, t.tensor_type).astype(np.float64)  # [rows, n_in]

    w = {t.name: torch.tensor(values(t)) for t in r.tensors}
    return w, read_hparams(r)


def rms_norm(x, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def rope(x, base, neox=False, factors=None):
    # x: [T, heads, hd]; pair i turns by pos * base^(-2i/hd) / factors[i] (llama3's rope_freqs).
    # ggml mode 0 pairs (x[2i], x[2i+1]); NEOX pairs (x[i], x[i + hd/2])
    T, _, hd = x.shape
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    theta = pos * base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)  # [T, hd/2]
    if factors is not None:
        theta = theta / factors
    cos, sin = torch.cos(theta)[:, None, :], torch.sin(theta)[:, None, :]
    i0, i1 = (slice(0, hd // 2), slice(hd // 2, hd)) if neox else (slice(0, hd, 2), slice(1, hd, 2))
    x0, x1 = x[..., i0], x[..., i1]
    out = torch.empty_like(x)
    out[..., i0] = x0 * cos - x1 * sin
    out[..., i1] = x0 * sin + x1 * cos
    return out


def forward(w, hp, lora, tokens):
    """Logits [T, n_vocab] of tokens, with the adapter lora ({(layer, target): (A, B)}) at scale ALPHA / R."""
    nh, nkv, hd = hp["n_head"], hp["n_head_kv"], hp["hd"]
    g = nh // nkv
    T = len(tokens)
    scale = ALPHA / R
    neox = hp["arch"] in ("qwen2", "qwen3")
    factors = w.get("rope_freqs.weight") if hp["arch"] == "llama" else None

    def lin(x, il, t):
        y = x @ w[f"blk.{il}.{STEMS[t]}.weight"].T
        a, b = lora[(il, t)]
        y = y + scale * (x @ a.T) @ b.T
        bias = w.get(f"blk.{il}.{STEMS[t]}.bias")  # qwen2's q/k/v
        return y if bias is None else y + bias

    def head_norm(x, il, which):  # qwen3: RMSNorm of each head's vector
        nw = w.get(f"blk.{il}.attn_{which}_norm.weight")
        return x if nw is None else rms_norm(x, hp["eps"]) * nw

    x = w["token_embd.weight"][torch.tensor(tokens)]
    mask = torch.full((T, T), -math.inf).triu(1)
    for il in range(hp["n_layer"]):
        h = rms_norm(x, hp["eps"]) * w[f"blk.{il}.attn_norm.weight"]
        q = rope(head_norm(lin(h, il, "q").view(T, nh, hd), il, "q"), hp["base"], neox, factors)
        k = rope(head_norm(lin(h, il, "k").view(T, nkv, hd), il, "k"), hp["base"], neox, factors).repeat_interleave(g, dim=1)
        v = lin(h, il, "v").view(T, nkv, hd).repeat_interleave(g, dim=1)
        att = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd) + mask
        o = torch.einsum("hqk,khd->qhd", torch.softmax(att, -1), v).reshape(T, nh * hd)
        x = x + lin(o, il, "o")
        h2 = rms_norm(x, hp["eps"]) * w[f"blk.{il}.ffn_norm.weight"]
        x = x + lin(torch.nn.functional.silu(lin(h2, il, "gate")) * lin(h2, il, "up"), il, "down")
    out = w["output.weight"] if "output.weight" in w else w["token_embd.weight"]
    return (rms_norm(x, hp["eps"]) * w["output_norm.weight"]) @ out.T


def init_lora(w, hp, rng):
    """A (R, n_in) uniform in +-1/sqrt(n_in) and B (n_out, R) uniform in +-0.05 for every target of every
    layer, drawn from rng in that order: float32-representable values, so the float32 engine starts from
    the same point. Returns lora ({(layer, target): (A, B)}, float64, requiring grad), the tensors'
    names (blk.L.attn_q.weight.lora_a, ...) and the parameters in the same order."""
    lora, names, params = {}, [], []
    for il in range(hp["n_layer"]):
        for t in TARGETS:
            stem = f"blk.{il}.{STEMS[t]}.weight"
            n_out, n_in = w[stem].shape
            a = rng.uniform(-1 / math.sqrt(n_in), 1 / math.sqrt(n_in), (R, n_in)).astype(np.float32)
            b = rng.uniform(-0.05, 0.05, (n_out, R)).astype(np.float32)
            ta = torch.tensor(a.astype(np.float64), requires_grad=True)
            tb = torch.tensor(b.astype(np.float64), requires_grad=True)
            lora[(il, t)] = (ta, tb)
            names += [stem + ".lora_a", stem + ".lora_b"]
            params += [ta, tb]
    return lora, names, params


def adamw(params, hp):
    """torch.optim.AdamW with the fixture's hp (lr, beta1, beta2, eps, weightDecay)."""
    return torch.optim.AdamW(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], weight_decay=hp["weightDecay"])


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_fixture(path, fixture):
    """The fixture as one line of compact JSON and a newline, as the committed ones are."""
    with open(path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
