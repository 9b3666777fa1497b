#!/usr/bin/env python3
"""Records a reference LoRA training trajectory with PyTorch, for test/engine-torch.test.ts.

It shares no code with the engine: a float64 model from the GGUF tensors (scripts/torch_ref_common.py,
which make-grpo-reference.py uses too), LoRA as PEFT defines it (y = W x + (alpha / r) B A x),
autograd for the gradients,
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
import json
import sys

import numpy as np
import torch

from torch_ref_common import ALPHA, R, TARGETS, adamw, forward, init_lora, load, sha256, write_fixture

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
    lora, names, params = init_lora(w, hp, rng)
    initial = [p.detach().numpy().ravel().tolist() for p in params]

    opt = adamw(params, HP)
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

    fixture = {
        "about": "LoRA training trajectory recorded by scripts/make-torch-reference.py (PyTorch " + torch.__version__ + ", float64)",
        "model": {"makeTestModel": make_opts, "sha256": sha256(model_path)},
        "lora": {"r": R, "alpha": ALPHA, "targets": TARGETS},
        "hp": HP,
        "sequences": seqs,
        "steps": steps,
        "tensors": [
            {"name": n, "initial": [float(np.float32(x)) for x in init], "final": [round(x, 12) for x in p.detach().numpy().ravel().tolist()]}
            for n, init, p in zip(names, initial, params)
        ],
    }
    write_fixture(out_path, fixture)
    print(f"wrote {out_path}: {STEPS} steps, losses {[round(s['loss'], 6) for s in steps]}")


if __name__ == "__main__":
    main()
