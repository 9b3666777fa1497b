// Tiers 1 and 2: finite-difference gradient checks of every LoRA target, accumulation against one
// big batch, AdamW against numbers worked out by hand, and an overfit run.
import { beforeAll, describe, expect, test } from "vitest";
import { LoraEngine, makeBatch, type Batch } from "../src/engine/engine.js";
import { checkCentralDifferences } from "./helpers/grad-check.js";
import { randomize, rng, tempDir, testModel } from "./helpers/models.js";

const ALL = ["q", "k", "v", "o", "gate", "up", "down"];

/** Four sequences of different lengths; the first `prompt` tokens of each are not targets. */
function sequences(n: number, seed: number) {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const len = 6 + ((i * 3) % 7);
    const tokens = [1, ...Array.from({ length: len - 1 }, () => 100 + Math.floor((r() + 1) * 15000))];
    const mask = tokens.map((_, j) => (j >= 3 ? 1 : 0));
    return { tokens, mask };
  });
}

function maskedTokens(b: Batch): number {
  let n = 0;
  for (let s = 0; s < b.nSeq; s++) for (let j = 1; j < b.seqLen; j++) n += b.mask[s * b.seqLen + j];
  return n;
}

describe("gradients", () => {
  let model: string;
  beforeAll(async () => {
    model = await testModel({ type: "f32" });
  });

  test("dLoss/dA and dLoss/dB of every target agree with central differences", async () => {
    const engine = await LoraEngine.create({ model, device: "cpu", lora: { targetModules: ALL, r: 4, alpha: 8 } });
    const batch = makeBatch(sequences(2, 5));
    const { checked, worst } = await checkCentralDifferences(engine, batch, maskedTokens(batch), { random: 2 });
    expect(checked).toBe(2 * 7 * 2 * 3);
    expect(worst).toBeLessThanOrEqual(1);
    await engine.dispose();
  });
});

describe("accumulation and the optimizer", () => {
  let model: string;
  beforeAll(async () => {
    model = await testModel({ type: "f32" });
  });

  test("four micro-batches accumulated give the gradients of one batch of four", async () => {
    const seqs = sequences(4, 9);
    const big = makeBatch(seqs);
    const N = maskedTokens(big);
    const a = await LoraEngine.create({ model, device: "cpu", lora: { targetModules: ALL, r: 4 } });
    await a.setAdapter(randomize(await a.getAdapter(), 4, 0.2));
    const one = await a.accumulate(big, N);
    const gBig = await a.getAdapter({ gradients: true });
    await a.zeroGrad();
    let lossSum = 0;
    let nTok = 0;
    for (const s of seqs) {
      const st = await a.accumulate(makeBatch([s]), N);
      lossSum += st.lossSum;
      nTok += st.nTokens;
    }
    const gMicro = await a.getAdapter({ gradients: true });
    expect(nTok).toBe(one.nTokens);
    expect(nTok).toBe(N);
    expect(lossSum).toBeCloseTo(one.lossSum, 9);
    let maxAbs = 0;
    let maxDiff = 0;
    for (let i = 0; i < gBig.length; i++) {
      for (let j = 0; j < gBig[i].data.length; j++) {
        maxAbs = Math.max(maxAbs, Math.abs(gBig[i].data[j]));
        maxDiff = Math.max(maxDiff, Math.abs(gBig[i].data[j] - gMicro[i].data[j]));
      }
    }
    expect(maxAbs).toBeGreaterThan(1e-3);
    // same sums in another order: float32 rounding only
    expect(maxDiff).toBeLessThanOrEqual(1e-6 * maxAbs);
    await a.dispose();
  });

  test("AdamW with clipping and weight decay matches numbers worked out by hand", async () => {
    const e = await LoraEngine.create({ model, device: "cpu", lora: { targetModules: ["q"], r: 1 } });
    const zeros = (await e.getAdapter()).map((t) => ({ ...t, data: new Float32Array(t.data.length) }));
    const params = zeros.map((t) => ({ ...t, data: Float32Array.from(t.data) }));
    const grads = zeros.map((t) => ({ ...t, data: Float32Array.from(t.data) }));
    params[0].data[0] = 0.5;
    grads[0].data[0] = 0.3;
    params[1].data[5] = -1.0;
    grads[1].data[5] = -0.4;
    await e.setAdapter(params);
    await e.setAdapter(grads, { gradients: true });
    const hp = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 0.25 };
    // ‖g‖ = sqrt(0.3² + 0.4²) = 0.5 > 0.25: g' = g · 0.25 / (0.5 + 1e-6)
    const norm = await e.step(hp);
    expect(norm).toBeCloseTo(0.5, 7);
    let p = await e.getAdapter();
    // step 1: w·(1 − lr·wd) − lr · ĝ / (|ĝ| + eps) with m̂ = g', sqrt(v̂) = |g'|
    //   0.5 · 0.999 − 0.1 · 0.1499997 / (0.1499997 + 1e-8) = 0.3995000067
    //  −1.0 · 0.999 + 0.1 · 0.1999996 / (0.1999996 + 1e-8) = −0.8990000050
    expect(p[0].data[0]).toBeCloseTo(0.3995000067, 6);
    expect(p[1].data[5]).toBeCloseTo(-0.899000005, 6);
    expect(p[0].data[1]).toBe(0); // no gradient, no weight: stays 0
    // gradients are zeroed by the step
    expect((await e.getAdapter({ gradients: true })).every((t) => t.data.every((x) => x === 0))).toBe(true);
    // step 2 with a zero gradient: m = 0.9·m1, v = 0.999·v1, bias corrections 0.19 and 0.001999
    //   0.3995000067 · 0.999 − 0.1 · (0.0134999730 / 0.19) / (sqrt(2.2477410e-5 / 0.001999) + 1e-8) = 0.3320946876
    expect(await e.step(hp)).toBe(0);
    p = await e.getAdapter();
    expect(p[0].data[0]).toBeCloseTo(0.3320946876, 6);
    expect(p[1].data[5]).toBeCloseTo(-0.8310951843, 6);
    // the moments are there to save and restore for resuming
    const st = await e.getOptimizerState();
    expect(st.t).toBe(2);
    expect(st.m[0].data[0]).toBeCloseTo(0.9 * 0.1 * 0.1499997, 7);
    await e.dispose();
  });

  test("100 steps on 4 examples cut the masked loss by at least 90%", async () => {
    const e = await LoraEngine.create({ model, device: "cpu", lora: { targetModules: ["q", "v", "o", "down"], r: 8, alpha: 16 } });
    const batch = makeBatch(sequences(4, 21));
    const N = maskedTokens(batch);
    const before = (await e.evaluate(batch)).lossSum / N;
    for (let i = 0; i < 100; i++) {
      await e.accumulate(batch, N);
      await e.step({ lr: 1e-2, maxGradNorm: 1.0 });
    }
    const after = await e.evaluate(batch);
    expect(after.lossSum / N).toBeLessThanOrEqual(0.1 * before);
    expect(after.nCorrect).toBe(N);
    await e.dispose();
  });

  test("dropout is seeded, reaches only training, and changes the gradient", async () => {
    const batch = makeBatch(sequences(2, 3));
    const N = maskedTokens(batch);
    const grads = async (dropout: number, seed: number) => {
      const e = await LoraEngine.create({ model, device: "cpu", lora: { targetModules: ["q", "v"], dropout, seed } });
      await e.setAdapter(randomize(await e.getAdapter(), 8, 0.2));
      const ev1 = await e.evaluate(batch);
      await e.accumulate(batch, N);
      const g = (await e.getAdapter({ gradients: true })).map((t) => Array.from(t.data));
      await e.dispose();
      return { g, ev1 };
    };
    const a = await grads(0.3, 1);
    const b = await grads(0.3, 1);
    const c = await grads(0.3, 2);
    const d = await grads(0, 1);
    expect(a.g).toEqual(b.g);
    expect(a.g).not.toEqual(c.g);
    expect(a.g).not.toEqual(d.g);
    expect(a.ev1.lossSum).toBe(d.ev1.lossSum); // evaluation runs without dropout
  });
});

describe("half-precision weights", () => {
  test("F16 and BF16 models give the gradients of the F32 model they round (transposed copies included)", async () => {
    const batch = makeBatch(sequences(2, 13));
    const N = maskedTokens(batch);
    const grads = async (type: "f32" | "f16" | "bf16") => {
      const e = await LoraEngine.create({ model: await testModel({ type }), device: "cpu", lora: { targetModules: ALL, r: 4 } });
      await e.setAdapter(randomize(await e.getAdapter(), 17, 0.2));
      await e.accumulate(batch, N);
      const g = (await e.getAdapter({ gradients: true })).flatMap((t) => Array.from(t.data));
      await e.dispose();
      return g;
    };
    const ref = await grads("f32");
    // measured 1.8e-3 (f16) and 1.5e-2 (bf16): weight rounding; a wrong transposed copy gives O(1)
    for (const [type, tol] of [
      ["f16", 5e-3],
      ["bf16", 4e-2],
    ] as const) {
      const g = await grads(type);
      let num = 0;
      let den = 0;
      for (let i = 0; i < ref.length; i++) {
        num += (g[i] - ref[i]) ** 2;
        den += ref[i] ** 2;
      }
      expect(Math.sqrt(num / den), type).toBeLessThan(tol);
    }
  });
});

describe("resuming", () => {
  test("adapter GGUF + optimizer state resume a run exactly, dropout stream included", async () => {
    const model = await testModel({ type: "f32" });
    const batch = makeBatch(sequences(2, 31));
    const N = maskedTokens(batch);
    const lora = { targetModules: ["q", "v", "down"], dropout: 0.1, seed: 5 };
    const hp = { lr: 1e-2, weightDecay: 0.01, maxGradNorm: 1 };
    const train = async (e: LoraEngine, steps: number) => {
      for (let i = 0; i < steps; i++) {
        await e.accumulate(batch, N);
        await e.step(hp);
      }
    };
    const straight = await LoraEngine.create({ model, device: "cpu", lora });
    await train(straight, 5);
    const want = await straight.getAdapter();
    await straight.dispose();

    const first = await LoraEngine.create({ model, device: "cpu", lora });
    await train(first, 3);
    const file = `${tempDir()}/checkpoint.gguf`;
    await first.saveAdapter(file);
    const state = await first.getOptimizerState();
    await first.dispose();
    expect(state).toMatchObject({ t: 3, dropoutCalls: 6 }); // one dropout draw per sequence

    const resumed = await LoraEngine.create({ model, device: "cpu", lora });
    await resumed.loadAdapter(file);
    await resumed.setOptimizerState(state);
    await train(resumed, 2);
    const got = await resumed.getAdapter();
    await resumed.dispose();
    expect(got.map((t) => Array.from(t.data))).toEqual(want.map((t) => Array.from(t.data)));
  });
});
