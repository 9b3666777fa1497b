// The engine's two GRPO pieces: per-token log-probabilities of given sequences (forward only, at a
// temperature) against our own logits and against llama.cpp's on the same base + adapter, and the
// accumulation with a float weight per target token against the 0/1-mask accumulation it extends.
import path from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { LoraEngine, makeBatch } from "../src/engine/engine.js";
import { llamaCppLogProbs } from "./helpers/llamacpp.js";
import { logSoftmax, randomize, tempDir, testModel } from "./helpers/models.js";

const TOKENS = [1, 518, 25580, 29962, 3251, 403, 3758, 363, 278, 1494, 1139, 29889, 894, 29901];
const ALL = ["q", "k", "v", "o", "gate", "up", "down"];
const MASK = TOKENS.map((_, j) => (j >= 5 ? 1 : 0));

/** log softmax(row / temperature)[token j] from the previous position's row, for each target j. */
function expected(rows: readonly (Float32Array | Float64Array)[], temperature: number): number[] {
  const scaled = logSoftmax(rows.map((r) => Float64Array.from(r, (x) => x / temperature)));
  return TOKENS.flatMap((t, j) => (MASK[j] ? [scaled[j - 1][t]] : []));
}

describe("per-token log-probabilities", () => {
  let model: string;
  beforeAll(async () => {
    model = await testModel({ type: "f32" });
  });

  for (const temperature of [1, 0.7]) {
    test(`at temperature ${temperature} they equal log_softmax(logits / T) of our logits and of llama.cpp's with our adapter`, async () => {
      const engine = await LoraEngine.create({ model, device: "cpu", lora: { targetModules: ALL, r: 4, alpha: 8 } });
      await engine.setAdapter(randomize(await engine.getAdapter(), 5, 0.3));
      const batch = makeBatch([{ tokens: TOKENS, mask: MASK }]);
      const lp = await engine.logprobs(batch, temperature);
      expect(lp.length).toBe(TOKENS.length);
      MASK.forEach((m, j) => m || expect(lp[j]).toBe(0));
      const ours = TOKENS.flatMap((_, j) => (MASK[j] ? [lp[j]] : []));
      const fromLogits = expected(await engine.logits(TOKENS), temperature);
      for (const [i, x] of ours.entries()) expect(Math.abs(x - fromLogits[i])).toBeLessThan(2e-5);

      const file = path.join(tempDir(), "adapter.gguf");
      await engine.saveAdapter(file);
      await engine.dispose();
      const cpp = expected(await llamaCppLogProbs(model, TOKENS, { loraPath: file, loraScale: 1 }), temperature);
      const base = expected(await llamaCppLogProbs(model, TOKENS), temperature);
      let maxErr = 0;
      let maxMove = 0;
      for (const [i, x] of ours.entries()) {
        maxErr = Math.max(maxErr, Math.abs(x - cpp[i]));
        maxMove = Math.max(maxMove, Math.abs(cpp[i] - base[i]));
      }
      expect(maxErr).toBeLessThan(1e-4); // measured ~1e-6
      expect(maxMove).toBeGreaterThan(1e-2); // the adapter really changes the log-probabilities
    });
  }
});

describe("weighted accumulation", () => {
  test("weights 1 at temperature 1 give the 0/1 mask's gradients; weights are linear", async () => {
    const model = await testModel({ type: "f32" });
    const engine = await LoraEngine.create({ model, device: "cpu", lora: { targetModules: ALL, r: 2, alpha: 4 } });
    await engine.setAdapter(randomize(await engine.getAdapter(), 9, 0.2));
    const grads = async (): Promise<Float32Array[]> => {
      const g = (await engine.getAdapter({ gradients: true })).map((t) => Float32Array.from(t.data));
      await engine.zeroGrad();
      return g;
    };
    const batch = makeBatch([{ tokens: TOKENS, mask: MASK }]);
    const n = MASK.reduce((a: number, b) => a + b, 0);
    await engine.accumulate(batch, n);
    const sft = await grads();
    await engine.accumulateWeighted(batch, Float32Array.from(MASK), { gradScale: 1 / n, temperature: 1 });
    const w1 = await grads();
    sft.forEach((g, i) => expect(w1[i]).toEqual(g)); // the same graph ops: bit for bit

    // weights (2 at token 6, -1 at token 9) = 2·(mask at 6) − (mask at 9)
    const one = (j: number) => Float32Array.from(TOKENS, (_, k) => (k === j ? 1 : 0));
    await engine.accumulateWeighted(batch, one(6), { gradScale: 1, temperature: 0.7 });
    const g6 = await grads();
    await engine.accumulateWeighted(batch, one(9), { gradScale: 1, temperature: 0.7 });
    const g9 = await grads();
    const w = new Float32Array(TOKENS.length);
    w[6] = 2;
    w[9] = -1;
    await engine.accumulateWeighted(batch, w, { gradScale: 1, temperature: 0.7 });
    const g = await grads();
    let maxErr = 0;
    let maxG = 0;
    g.forEach((t, i) =>
      t.forEach((x, k) => {
        maxErr = Math.max(maxErr, Math.abs(x - (2 * g6[i][k] - g9[i][k])));
        maxG = Math.max(maxG, Math.abs(x));
      }),
    );
    expect(maxG).toBeGreaterThan(1e-3);
    expect(maxErr / maxG).toBeLessThan(1e-5);

    // bad input is refused before the boundary, naming what was wrong
    await expect(
      engine.accumulateWeighted(
        batch,
        Float32Array.from(TOKENS, () => NaN),
        { gradScale: 1, temperature: 1 },
      ),
    ).rejects.toThrow(/weights\[0\]\[0\].*finite/);
    await expect(engine.logprobs(batch, 0)).rejects.toThrow(/temperature/);
    await engine.dispose();
  });

  test("refused with LoRA dropout on", async () => {
    const model = await testModel({ type: "f32" });
    const engine = await LoraEngine.create({ model, device: "cpu", lora: { targetModules: ["q"], dropout: 0.1 } });
    const batch = makeBatch([{ tokens: TOKENS, mask: MASK }]);
    await expect(engine.accumulateWeighted(batch, Float32Array.from(MASK), { gradScale: 1, temperature: 1 })).rejects.toThrow(/dropout/);
    await engine.dispose();
  });
});
