#!/usr/bin/env python3
"""The PyTorch side of `npm run bench:vs-torch`: a plain LoRA training step at TinyLlama shape.

Random frozen weights (bf16 or fp32), LoRA on q and v (fp32 A and B, alpha = 2r as in
bench:step), one sequence of --tokens tokens whose every position is a target, loss, backward,
AdamW. One warm-up step, then the median of --steps timed steps. Prints one JSON line:
{"sPerStep", "tokensPerS", "peakRssGB", "threads", "dtype", "torch"}.

Needs python3 with torch (Debian: apt install python3-torch). No Hugging Face code: the model is
written out below, so the step is what PyTorch's kernels make of the same arithmetic.
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--tokens", type=int, default=256)
p.add_argument("--steps", type=int, default=3)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
p.add_argument("--rank", type=int, default=8)
a = p.parse_args()
if a.threads > 0:
    torch.set_num_threads(a.threads)
dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
torch.manual_seed(0)

E, L, H, HKV, FF, V = 2048, 22, 32, 4, 5632, 32000
HD = E // H
R, ALPHA = a.rank, 2 * a.rank


def w(o, i):
    return (torch.randn(o, i) * 0.02).to(dt)


class Lora(torch.nn.Module):
    def __init__(self, o, i):
        super().__init__()
        self.A = torch.nn.Parameter(torch.empty(R, i).uniform_(-1 / math.sqrt(i), 1 / math.sqrt(i)))
        self.B = torch.nn.Parameter(torch.zeros(o, R))

    def forward(self, x):
        return (x.float() @ self.A.t() @ self.B.t() * (ALPHA / R)).to(dt)


class Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.wq, self.wk, self.wv, self.wo = w(E, E), w(HKV * HD, E), w(HKV * HD, E), w(E, E)
        self.wg, self.wu, self.wd = w(FF, E), w(FF, E), w(E, FF)
        self.n1, self.n2 = torch.ones(E, dtype=dt), torch.ones(E, dtype=dt)
        self.lq, self.lv = Lora(E, E), Lora(HKV * HD, E)


def rms(x, g):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(dt) * g


def rope(x, cos, sin):  # x [T, heads, HD], HF's rotate_half
    x1, x2 = x[..., : HD // 2], x[..., HD // 2 :]
    return x * cos + torch.cat((-x2, x1), -1) * sin


layers = [Layer() for _ in range(L)]
emb, norm, head = w(V, E), torch.ones(E, dtype=dt), w(V, E)
T = a.tokens
pos = torch.arange(T).float()
inv = 1.0 / (10000 ** (torch.arange(0, HD, 2).float() / HD))
ang = torch.outer(pos, inv)
cos = torch.cat((ang, ang), -1).cos()[:, None, :].to(dt)
sin = torch.cat((ang, ang), -1).sin()[:, None, :].to(dt)
mask = torch.full((T, T), float("-inf")).triu(1)
params = [q for l in layers for q in list(l.lq.parameters()) + list(l.lv.parameters())]
opt = torch.optim.AdamW(params, lr=2e-4)
tokens = torch.tensor([1] + [100 + (i * 7919) % 31000 for i in range(1, T + 1)])


def step():
    x = emb[tokens[:-1]]
    for l in layers:
        h = rms(x, l.n1)
        q = (h @ l.wq.t() + l.lq(h)).view(T, H, HD)
        k = (h @ l.wk.t()).view(T, HKV, HD)
        v = (h @ l.wv.t() + l.lv(h)).view(T, HKV, HD)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        k = k.repeat_interleave(H // HKV, 1)
        v = v.repeat_interleave(H // HKV, 1)
        s = torch.einsum("qhd,khd->hqk", q, k).float() / math.sqrt(HD) + mask
        o = torch.einsum("hqk,khd->qhd", s.softmax(-1).to(dt), v).reshape(T, E)
        x = x + o @ l.wo.t()
        h = rms(x, l.n2)
        x = x + (F.silu(h @ l.wg.t()) * (h @ l.wu.t())) @ l.wd.t()
    logits = (rms(x, norm) @ head.t()).float()
    loss = F.cross_entropy(logits, tokens[1:])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad()


step()
times = []
for _ in range(a.steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
times.sort()
n = len(times)
med = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
print(
    json.dumps(
        {
            "sPerStep": med,
            "tokensPerS": T / med,
            "peakRssGB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
            "threads": torch.get_num_threads(),
            "dtype": a.dtype,
            "torch": torch.__version__,
        }
    )
)
