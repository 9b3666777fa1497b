#!/usr/bin/env python3
"""Records a reference LoRA training trajectory with PyTorch, for test/engine-torch.test.ts.

It shares no code with the engine: a float64 model written here from the GGUF tensors, LoRA as
PEFT defines it (y = W x + (alpha / r) B A x), autograd for the gradients,
torch.nn.utils.clip_grad_norm_ and torch.optim.AdamW. Run once; the fixture is committed. It needs
Debian's python3-torch (1.13) and the gguf-py reader from the llama.cpp source that node-llama-cpp
ships:

  apt-get install python3-torch python3-numpy
  npm run make-test-model -- --out /tmp/t2s-ref.gguf          # the default tiny F32 test model
  /usr/bin/python3 scripts/make-torch-reference.py /tmp/t2s-ref.gguf test/fixtures/torch-trajectory.json

The other families (issue 13), from their tiny test models (makeTestModel({family})):

  npm run make-test-model -- --family qwen2 --out /tmp/t2s-qwen2.gguf
  /usr/bin/python3 scripts/make-torch-reference.py /tmp/t2s-qwen2.gguf test/fixtures/torch-trajectory-qwen2.json qwen2

per family the model is the one llama.cpp's src/models/<arch>.cpp builds:
  llama (llama, llama3)  q/k rows in llama.cpp's order, so RoPE is ggml's mode 0 on adjacent
                         pairs; llama3's rope_freqs.weight divides each pair's angle
  qwen2                  q/k/v biases; NEOX RoPE (pairs half a head apart, HF's rotate_half)
  qwen3                  per-head RMSNorm of q and k before RoPE; head size attention.key_length
and the output head is token_embd where output.weight is absent (tied).

A quantized base (issue 14): its tensors are dequantized by gguf-py's own numpy code
(gguf.quants.dequantize, independent of ours), then the same float64 model runs on them. The third
argument is the makeTestModel options the test rebuilds the model with:

  npm run make-test-model -- --out /tmp/t2s-q8.gguf --type q8_0
  /usr/bin/python3 scripts/make-torch-reference.py /tmp/t2s-q8.gguf test/fixtures/torch-trajectory-q8_0.json '{"type":"q8_0"}'
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
HP = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weightDecay=0.01, maxGradNorm=1.0)
STEPS = 6
# two micro-batches per optimizer step; the first three tokens of each are prompt (not targets)
SEQS = [
    {"tokens": [1, 518, 25580, 29962, 3251, 403, 3758, 363, 278, 1494, 1139], "mask": [0, 0, 0] + [1] * 8},
    {"tokens": [1, 894, 29901, 1128, 1784, 15883, 526, 727], "mask": [0, 0, 0] + [1] * 5},
]
# the same shape of data in each family's vocabulary (BOS 128000 for Llama 3; Qwen adds none)
FAMILY_SEQS = {
    "llama": SEQS,
    "llama3": [
        {"tokens": [128000, 4438, 1690, 14971, 527, 9191, 1109, 220, 3487, 30, 19638], "mask": [0, 0, 0] + [1] * 8},
        {"tokens": [128000, 1797, 1161, 4393, 2010, 5401, 4325, 871], "mask": [0, 0, 0] + [1] * 5},
    ],
    "qwen2": [
        {"tokens": [4340, 1657, 14629, 525, 9014, 1091, 220, 20, 21, 30, 19094], "mask": [0, 0, 0] + [1] * 8},
        {"tokens": [4858, 1760, 28671, 4295, 1968, 5288, 4231, 861], "mask": [0, 0, 0] + [1] * 5},
    ],
}
FAMILY_SEQS["qwen3"] = FAMILY_SEQS["qwen2"]


def field(r, key):
    return r.fields[key].parts[-1][0].item()


def load(path):
    r = GGUFReader(path)
    plain = (GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16)

    def values(t):
        if t.tensor_type in plain:
            return np.array(t.data, dtype=np.float64)
        return dequantize(t.data, t.tensor_type).astype(np.float64)  # [rows, n_in]

    w = {t.name: torch.tensor(values(t)) for t in r.tensors}
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    n_embd, n_head = field(r, f"{arch}.embedding_length"), field(r, f"{arch}.attention.head_count")
    hp = {
        "arch": arch,
        "n_embd": n_embd,
        "n_layer": field(r, f"{arch}.block_count"),
        "n_head": n_head,
        "n_head_kv": field(r, f"{arch}.attention.head_count_kv"),
        "hd": field(r, f"{arch}.attention.key_length") if f"{arch}.attention.key_length" in r.fields else n_embd // n_head,
        "eps": field(r, f"{arch}.attention.layer_norm_rms_epsilon"),
        "base": field(r, f"{arch}.rope.freq_base"),
    }
    return w, hp


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


def nll_sum(logits, seq):
    logp = torch.log_softmax(logits[:-1], -1)
    tgt = torch.tensor(seq["tokens"][1:])
    m = torch.tensor(seq["mask"][1:], dtype=torch.float64)
    return -(logp.gather(1, tgt[:, None])[:, 0] * m).sum()


def main():
    model_path, out_path = sys.argv[1], sys.argv[2]
    # the third argument: a family name (llama, llama3, qwen2, qwen3) or the makeTestModel options as JSON
    arg = sys.argv[3] if len(sys.argv) > 3 else "llama"
    make_opts = json.loads(arg) if arg.startswith("{") else ({} if arg == "llama" else {"family": arg})
    family = make_opts.get("family", "llama")
    seqs = FAMILY_SEQS[family]
    w, hp = load(model_path)
    rng = np.random.default_rng(0)
    lora, names, params = {}, [], []
    for il in range(hp["n_layer"]):
        for t in TARGETS:
            wt = w[f"blk.{il}.{STEMS[t]}.weight"]
            n_out, n_in = wt.shape
            # float32-representable starting values, so the float32 engine starts from the same point
            a = rng.uniform(-1 / math.sqrt(n_in), 1 / math.sqrt(n_in), (R, n_in)).astype(np.float32)
            b = rng.uniform(-0.05, 0.05, (n_out, R)).astype(np.float32)
            ta = torch.tensor(a.astype(np.float64), requires_grad=True)
            tb = torch.tensor(b.astype(np.float64), requires_grad=True)
            lora[(il, t)] = (ta, tb)
            base = f"blk.{il}.{STEMS[t]}.weight"
            names += [base + ".lora_a", base + ".lora_b"]
            params += [ta, tb]
    initial = [p.detach().numpy().ravel().tolist() for p in params]

    opt = torch.optim.AdamW(params, lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"], weight_decay=HP["weightDecay"])
    n_tokens = sum(sum(s["mask"][1:]) for s in seqs)
    steps = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss_sum = 0.0
        for s in seqs:  # accumulate micro-batches, each scaled by the whole batch's token count
            l = nll_sum(forward(w, hp, lora, s["tokens"]), s)
            (l / n_tokens).backward()
            loss_sum += l.item()
        norm = torch.nn.utils.clip_grad_norm_(params, HP["maxGradNorm"]).item()
        opt.step()
        steps.append({"loss": loss_sum / n_tokens, "gradNorm": norm})

    with open(model_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    fixture = {
        "about": "LoRA training trajectory recorded by scripts/make-torch-reference.py (PyTorch " + torch.__version__ + ", float64)",
        "model": {"makeTestModel": make_opts, "sha256": sha},
        "lora": {"r": R, "alpha": ALPHA, "targets": TARGETS},
        "hp": HP,
        "sequences": seqs,
        "steps": steps,
        "tensors": [
            {"name": n, "initial": [float(np.float32(x)) for x in init], "final": [round(x, 12) for x in p.detach().numpy().ravel().tolist()]}
            for n, init, p in zip(names, initial, params)
        ],
    }
    with open(out_path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {out_path}: {STEPS} steps, losses {[round(s['loss'], 6) for s in steps]}")


if __name__ == "__main__":
    main()
