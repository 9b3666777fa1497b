// Lean memory mode (transposed weights made in the graph) and gradient checkpointing (layers
// recomputed in the backward pass) compute the same numbers as the fast mode: the same ops on the
// same inputs, only kept or freed differently. They must agree exactly, with dropout on, every
// target adapted and every weight type; and they must really hold less memory.
import { beforeAll, describe, expect, test } from "vitest";
import { LoraEngine, makeBatch, type EngineOptions } from "../src/engine/engine.js";
import { randomize, rng, testModel } from "./helpers/models.js";

const ALL = ["q", "k", "v", "o", "gate", "up", "down"];

function sequences(n: number, len: number, seed: number) {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const tokens = [1, ...Array.from({ length: len - 1 - i * 3 }, () => 100 + Math.floor((r() + 1) * 15000))];
    return { tokens, mask: tokens.map((_, j) => (j >= 2 ? 1 : 0)) };
  });
}

async function run(model: string, extra: Partial<EngineOptions>) {
  const engine = await LoraEngine.create({ model, device: "cpu", threads: 2, lora: { targetModules: ALL, r: 4, alpha: 8, dropout: 0.1, seed: 3 }, ...extra });
  await engine.setAdapter(randomize(await engine.getAdapter(), 11, 0.2));
  const batch = makeBatch(sequences(3, 40, 5));
  const stats = await engine.accumulate(batch, 100);
  const grads = await engine.getAdapter({ gradients: true });
  const logits = await engine.logits(batch.tokens.subarray(0, 20));
  const mem = engine.memoryInfo();
  await engine.dispose();
  return { stats, grads, logits, mem };
}

function maxAbsDiff(a: { data: Float32Array }[], b: { data: Float32Array }[]): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) for (let j = 0; j < a[i].data.length; j++) m = Math.max(m, Math.abs(a[i].data[j] - b[i].data[j]));
  return m;
}

describe.each(["f32", "bf16", "f16"] as const)("memory modes (%s weights)", (type) => {
  let model: string;
  beforeAll(async () => {
    model = await testModel({ type });
  });

  test("lean, checkpointing and both give exactly the fast mode's loss, gradients and logits", async () => {
    const fast = await run(model, { memory: "fast", checkpointing: false });
    let nonzero = 0;
    for (const g of fast.grads) for (const x of g.data) nonzero += x !== 0 ? 1 : 0;
    expect(nonzero).toBeGreaterThan(1000); // every target received gradient
    for (const extra of [{ memory: "lean" as const, checkpointing: false }, { memory: "fast" as const, checkpointing: true }, { memory: "lean" as const }]) {
      const other = await run(model, extra);
      expect(other.stats).toEqual(fast.stats);
      expect(maxAbsDiff(other.grads, fast.grads)).toBe(0);
      expect(Array.from(other.logits)).toEqual(Array.from(fast.logits));
    }
  });

  test("lean holds no transposed copies; checkpointing shrinks the compute buffer", async () => {
    const fast = await run(model, { memory: "fast", checkpointing: false });
    const ckpt = await run(model, { memory: "fast", checkpointing: true });
    const lean = await run(model, { memory: "lean", checkpointing: false });
    expect(fast.mem.transposedBytes).toBeGreaterThan(0);
    expect(lean.mem.transposedBytes).toBe(0);
    expect(lean.mem.weightBytes).toBe(fast.mem.weightBytes - fast.mem.transposedBytes);
    expect(ckpt.mem.computeBytes).toBeLessThan(fast.mem.computeBytes);
  });
});

test("checkpointing defaults to on with memory lean, and options are validated", async () => {
  const model = await testModel({ type: "f32" });
  const e = await LoraEngine.create({ model, device: "cpu", memory: "lean" });
  expect(e.options.checkpointing).toBe(true);
  expect(e.info.lean).toBe(true);
  expect(e.info.checkpoint).toBe(true);
  await e.dispose();
  await expect(LoraEngine.create({ model, memory: "small" as never })).rejects.toThrow(/memory: expected "fast" or "lean", got "small"/);
  await expect(LoraEngine.create({ model, checkpointing: "yes" as never })).rejects.toThrow(/checkpointing: expected a boolean/);
});

test("profile: per-op timings of a step, forward and backward, with matrix-product FLOPs", async () => {
  const model = await testModel({ type: "bf16" });
  const e = await LoraEngine.create({ model, device: "cpu", profile: true, memory: "lean" });
  await e.accumulate(makeBatch(sequences(1, 30, 2)), 1);
  const p = e.takeProfile();
  // ggml's mul_mat through lean mode's transposed copies, or our AVX512-BF16 GEMM (no copies: it packs W per K-block)
  if (e.info.matmulKernel === "avx512-bf16") {
    expect(p.some((x) => x.phase === "forward" && x.op.startsWith("BF16 W·x bf16") && x.flop > 0)).toBe(true);
    expect(p.some((x) => x.phase === "backward" && x.op.startsWith("BF16 Wᵀ·dy bf16") && x.flop > 0)).toBe(true);
    expect(p.some((x) => x.op.includes("(weight transpose)"))).toBe(false);
  } else {
    expect(p.some((x) => x.phase === "forward" && x.op.startsWith("MUL_MAT bf16") && x.flop > 0)).toBe(true);
    expect(p.some((x) => x.phase === "backward" && x.op.includes("(weight transpose)"))).toBe(true);
  }
  expect(p.some((x) => x.phase === "backward" && x.op.includes("(LoRA)"))).toBe(true);
  expect(e.takeProfile()).toEqual([]); // taken
  await e.dispose();
});

test("the composed backward ops (as on Metal) give the fused ops' gradients", async () => {
  const model = await testModel({ type: "f32" });
  const fused = await run(model, { memory: "fast", checkpointing: false });
  const composed = await run(model, { memory: "fast", checkpointing: false, portableOps: true });
  expect(composed.stats.nTokens).toBe(fused.stats.nTokens);
  expect(Math.abs(composed.stats.lossSum - fused.stats.lossSum)).toBeLessThan(1e-9 * Math.abs(fused.stats.lossSum) + 1e-4);
  let num = 0;
  let den = 0;
  for (let i = 0; i < fused.grads.length; i++) {
    for (let j = 0; j < fused.grads[i].data.length; j++) {
      num += (composed.grads[i].data[j] - fused.grads[i].data[j]) ** 2;
      den += fused.grads[i].data[j] ** 2;
    }
  }
  expect(Math.sqrt(num / den)).toBeLessThan(1e-5);
});

test("checkpointing keeps the gate/up outputs of the last layers within its budget and recomputes the others, exactly", async () => {
  // 2 layers: an eighth of the ~17 MB of weights holds 2·n_ff·T floats of one layer at T = 1,500 (1.5 MB)
  // but not of both, so layer 1 keeps its gate/up outputs and layer 0 recomputes them
  const model = await testModel({ nCtx: 2048 });
  const r = rng(9);
  const tokens = Array.from({ length: 1500 }, () => 100 + Math.floor((r() + 1) * 15000));
  const grads = async (extra: Partial<EngineOptions>) => {
    const e = await LoraEngine.create({ model, device: "cpu", threads: 2, lora: { targetModules: ALL, r: 2 }, ...extra });
    await e.setAdapter(randomize(await e.getAdapter(), 4, 0.2));
    const stats = await e.accumulate(makeBatch([{ tokens }]), 1499);
    const g = await e.getAdapter({ gradients: true });
    const mem = e.memoryInfo();
    const w = e.info.weightBytes;
    await e.dispose();
    return { stats, g, mem, w };
  };
  const fast = await grads({ memory: "fast", checkpointing: false });
  const ckpt = await grads({ memory: "lean" });
  expect(ckpt.w / 8).toBeGreaterThan(2 * 128 * 1499 * 4);
  expect(ckpt.w / 8).toBeLessThan(2 * 2 * 128 * 1499 * 4);
  expect(ckpt.stats).toEqual(fast.stats);
  expect(maxAbsDiff(ckpt.g, fast.g)).toBe(0);
  expect(ckpt.mem.computeBytes).toBeLessThan(fast.mem.computeBytes);
});
