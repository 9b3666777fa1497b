#!/usr/bin/env python3
"""Records a reference of two GRPO steps with PyTorch, for test/grpo-torch.test.ts.

The model code (float64, from the GGUF tensors, LoRA as PEFT defines it) and the starting adapter
are scripts/torch_ref_common.py's, which make-torch-reference.py uses too, so it shares no code with
the engine. The samples are recorded here,
fixed (prompt ids, completion ids, rewards per group), so the replay has no sampling in it. Each
step: advantages (r - mean) / (sample std + 1e-4) per group; old log-probabilities from the policy
at the step's start, reference ones from the starting adapter (both detached); then MU = 2
AdamW updates of the loss

  L = -(1/N) sum_i sum_t [ min(rho*A, clip(rho, 1-eps, 1+eps)*A) - beta*KL_t ],
  rho = exp(logp - old), KL_t = exp(ref - logp) - (ref - logp) - 1,

with torch.nn.utils.clip_grad_norm_ and torch.optim.AdamW, log-probabilities of logits / T.
Run once per family; the fixtures are committed:

  npm run make-test-model -- --out /tmp/t2s-ref.gguf
  /usr/bin/python3 scripts/make-grpo-reference.py /tmp/t2s-ref.gguf test/fixtures/grpo-torch.json
  npm run make-test-model -- --family qwen2 --out /tmp/t2s-qwen2.gguf
  /usr/bin/python3 scripts/make-grpo-reference.py /tmp/t2s-qwen2.gguf test/fixtures/grpo-torch-qwen2.json qwen2
"""
import sys

import numpy as np
import torch

from torch_ref_common import ALPHA, R, TARGETS, adamw, forward, init_lora, load, sha256, write_fixture

HP = dict(lr=2e-2, beta1=0.9, beta2=0.999, eps=1e-8, weightDecay=0.01, maxGradNorm=1.0)
RL = dict(clipEps=0.2, klCoef=0.1, temperature=0.8, updatesPerBatch=2)
BOS = {"llama": [1], "qwen2": []}
PROMPTS = {"llama": [[518, 25580, 29962, 3251], [894, 29901, 1128]], "qwen2": [[4340, 1657, 14629, 525], [4858, 1760, 28671]]}
COMPLETIONS = {
    "llama": [[403, 3758, 363, 2], [1494, 1139, 2], [3758, 363, 278, 1494, 2], [15883, 526, 2], [727, 2], [526, 727, 15883]],
    "qwen2": [[9014, 1091, 220], [20, 21, 30], [19094, 220, 20, 21], [5288, 4231], [861, 4295, 1968], [4231, 861]],
}
# per step: for each of the two groups, the rewards of its three completions (one group all equal in step 2)
REWARDS = [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.1]], [[1.0, 1.0, 1.0], [0.0, 1.1, 1.0]]]


def batch(family, step):
    out = []
    for g, prompt in enumerate(PROMPTS[family]):
        rs = REWARDS[step][g]
        for k in range(3):
            comp = COMPLETIONS[family][(g * 3 + k + step) % 6]
            out.append({"group": g, "prompt_ids": BOS[family] + prompt, "completion_ids": comp, "reward": rs[k]})
    return out


def advantages(rs):
    r = torch.tensor(rs)
    if all(x == rs[0] for x in rs):
        return [0.0] * len(rs)
    return ((r - r.mean()) / (r.std() + 1e-4)).tolist()  # torch.std: the sample std (n - 1)


def logps(w, hp, lora, c):
    toks = c["prompt_ids"] + c["completion_ids"]
    lp = torch.log_softmax(forward(w, hp, lora, toks)[:-1] / RL["temperature"], -1)
    tgt = torch.tensor(toks[1:])
    return lp.gather(1, tgt[:, None])[:, 0][len(c["prompt_ids"]) - 1 :]


def main():
    model_path, out_path = sys.argv[1], sys.argv[2]
    family = sys.argv[3] if len(sys.argv) > 3 else "llama"
    w, hp = load(model_path)
    rng = np.random.default_rng(1)
    lora, names, params = init_lora(w, hp, rng)
    initial = [p.detach().numpy().ravel().tolist() for p in params]
    ref_lora = {k: (a.detach().clone(), b.detach().clone()) for k, (a, b) in lora.items()}
    opt = adamw(params, HP)
    eps, beta = RL["clipEps"], RL["klCoef"]
    steps = []
    for step in range(2):
        cs = batch(family, step)
        for g in range(2):
            adv = advantages([c["reward"] for c in cs if c["group"] == g])
            for c, a in zip([c for c in cs if c["group"] == g], adv):
                c["advantage"] = a
        with torch.no_grad():
            old = [logps(w, hp, lora, c) for c in cs]
            ref = [logps(w, hp, ref_lora, c) for c in cs]
        N = sum(len(c["completion_ids"]) for c in cs)
        updates = []
        for _ in range(RL["updatesPerBatch"]):
            opt.zero_grad()
            total, clipped = 0.0, 0
            for c, o, rf in zip(cs, old, ref):
                lp = logps(w, hp, lora, c)
                rho = torch.exp(lp - o)
                A = c["advantage"]
                surr = torch.minimum(rho * A, torch.clamp(rho, 1 - eps, 1 + eps) * A)
                clipped += int(((rho * A) > (torch.clamp(rho, 1 - eps, 1 + eps) * A)).sum().item())
                d = rf - lp
                kl = torch.exp(d) - d - 1
                total = total + (surr - beta * kl).sum()
            loss = -total / N
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, HP["maxGradNorm"]).item()
            opt.step()
            updates.append({"loss": loss.item(), "gradNorm": norm, "clipped": clipped})
        steps.append(
            {
                "samples": [
                    {**c, "old_logps": o.tolist(), "ref_logps": rf.tolist()} for c, o, rf in zip(cs, old, ref)
                ],
                "updates": updates,
                "tensors": [[round(x, 12) for x in p.detach().numpy().ravel().tolist()] for p in params],
            }
        )
    fixture = {
        "about": "two GRPO steps recorded by scripts/make-grpo-reference.py (PyTorch " + torch.__version__ + ", float64)",
        "model": {"makeTestModel": {} if family == "llama" else {"family": family}, "sha256": sha256(model_path)},
        "lora": {"r": R, "alpha": ALPHA, "targets": TARGETS},
        "hp": HP,
        "rl": RL,
        "initial": [{"name": n, "data": [float(np.float32(x)) for x in init]} for n, init in zip(names, initial)],
        "steps": steps,
    }
    write_fixture(out_path, fixture)
    print(f"wrote {out_path}: updates {[[ (round(u['loss'], 6), u['clipped']) for u in s['updates']] for s in steps]}")


if __name__ == "__main__":
    main()
