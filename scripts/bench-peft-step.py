#!/usr/bin/env python3
"""PyTorch + transformers + peft's side of the step timing on the GPU machine (issue 24; run by
scripts/device-check.sh beside `text2sql-check --time`): one LoRA training step at TinyLlama shape
(LlamaForCausalLM, random weights, bf16 frozen weights), peft's LoRA r=8, alpha 16 on q_proj and
v_proj (float32 A and B, as our engine keeps them), one sequence of T+1 tokens whose T next-token
targets all count (as text2sql-check's timed step), forward, backward, AdamW step. One warm-up
step per length, then the median of --steps timed steps (CUDA: synchronized before each clock).

  python3 scripts/bench-peft-step.py --device cuda --tokens 256,1024 [--steps 5]
  python3 scripts/bench-peft-step.py --device cpu --threads 16 --tokens 256
  python3 scripts/bench-peft-step.py --shape tiny ...     a tiny model, to rehearse the script

Prints one JSON line per length: {"bench": "torch-peft", "device", "tokens", "medianMs", "minMs",
"maxMs", "tokensPerS", "dtype", "threads", "peakGpuGB", "torch", "transformers", "peft"}. Eager
PyTorch (no torch.compile), transformers' default attention (sdpa).
"""
import argparse
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

SHAPES = {
    # TinyLlama-1.1B (TINYLLAMA_PRESET in src/models/test-model.ts, text2sql-check --shape tinyllama)
    "tinyllama": dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4, intermediate_size=5632, vocab_size=32000),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128, vocab_size=512),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tokens", default="256,1024")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--shape", default="tinyllama", choices=sorted(SHAPES))
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench-peft-step: --device cuda but torch.cuda.is_available() is false")
    dev = torch.device(a.device)
    lengths = [int(t) for t in a.tokens.split(",")]
    config = transformers.LlamaConfig(**SHAPES[a.shape], max_position_embeddings=max(2048, max(lengths) + 1), rms_norm_eps=1e-5, tie_word_embeddings=False)
    torch.manual_seed(0)
    with dev:
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    lora = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    pm = peft.get_peft_model(model, lora)
    for p in pm.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # LoRA A and B in float32, as ours
    pm.train()
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
    gen = torch.Generator().manual_seed(23)

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()

    for T in lengths:
        ids = torch.randint(0, config.vocab_size, (1, T + 1), generator=gen).to(dev)
        ms = []
        if a.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for i in range(a.steps + 1):
            sync()
            t0 = time.perf_counter()
            # autocast keeps float32 LoRA weights working with the bf16 activations
            with torch.autocast(device_type=a.device, dtype=torch.bfloat16):
                loss = pm(input_ids=ids, labels=ids, use_cache=False).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync()
            if i > 0:  # the first step warms up (allocator, kernels)
                ms.append((time.perf_counter() - t0) * 1000)
        med = statistics.median(ms)
        print(
            json.dumps(
                {
                    "bench": "torch-peft",
                    "device": torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
                    "shape": a.shape,
                    "tokens": T,
                    "medianMs": round(med, 2),
                    "minMs": round(min(ms), 2),
                    "maxMs": round(max(ms), 2),
                    "tokensPerS": round(1000 * T / med, 1),
                    "dtype": "bf16 weights, float32 LoRA, bf16 autocast",
                    "threads": torch.get_num_threads(),
                    "peakGpuGB": round(torch.cuda.max_memory_allocated() / 1e9, 2) if a.device == "cuda" else None,
                    "loss": round(float(loss.detach()), 4),
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "peft": peft.__version__,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
